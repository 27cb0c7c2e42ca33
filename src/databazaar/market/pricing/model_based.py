r"""Model-based pricing: sell noise-perturbed versions of the optimal model.

Reference: Chen, Koutris, Kumar (2019). *Towards model-based pricing for machine
learning in a data marketplace.* SIGMOD (the arbitrage-freeness characterisation
for Gaussian noise and the price-error curves).

Mechanism.  The market trains the optimal model :math:`\theta^*` on the product (here a
ridge regression or an L2 logistic regression on standardised features) and sells
:math:`\hat\theta = \theta^* + w`, :math:`w \sim \mathcal N(0, \delta I)`; the buyer
picks the noise variance :math:`\delta` and pays :math:`p(\delta)`.  Less noise is a
better model, so the price-error curve trades accuracy for money.

Arbitrage.  From :math:`k` purchases with variances :math:`\delta_1..\delta_k` a buyer
gets, by inverse-variance averaging, an unbiased model with variance
:math:`(\sum_i 1/\delta_i)^{-1}`, and from any model a worse one by adding noise.  Chen
et al. show :math:`p` is arbitrage-free iff, writing the price as a
function of the *precision* :math:`x = 1/\delta`, :math:`q(x) = p(1/x)`:

1. :math:`q` is non-decreasing (:math:`p` non-increasing in :math:`\delta`), and
2. :math:`q` is subadditive, :math:`q(x + y) \le q(x) + q(y)`.

Construction.  :class:`PriceCurve` turns a seller's wish list of (variance, price)
points into the *largest* curve below them among the curves with :math:`q(x)/x`
non-increasing (a sufficient condition for subadditivity that Chen et al. use to make
revenue optimisation tractable): :math:`q(x) = \min_j P_j \max(1, x / x_j)`.  Each term
is non-decreasing with :math:`q_j(x)/x` non-increasing, and both properties survive a
minimum; :math:`q(x+y) = (x+y)\,q(x+y)/(x+y) \le x\,q(x)/x + y\,q(y)/y`.  Prices are
rounded *up* to minor units in exact rational arithmetic, which keeps both properties
(:math:`\lceil a+b \rceil \le \lceil a \rceil + \lceil b \rceil`).

:func:`check_model_price_arbitrage` tests any price function on a grid of variances
and returns a concrete attack (which noisy models to buy and how to combine them).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.core.money import check_minor
from databazaar.market.pricing.base import PricingMechanism, Quote, register

MIN_VARIANCE = 1e-12
MAX_VARIANCE = 1e12
#: float noise ignored when rounding a price up to whole minor units
PRICE_TOLERANCE = 1e-9


def _variance(value: Any, name: str = "variance") -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction | np.floating):
        raise InvalidInput(f"{name} must be a positive number, got {value!r}")
    f = float(value)
    if not math.isfinite(f) or not MIN_VARIANCE <= f <= MAX_VARIANCE:
        raise InvalidInput(
            f"{name} must be between {MIN_VARIANCE:g} and {MAX_VARIANCE:g}, got {value!r}",
            hint="the noise variance of the model sold; larger is a noisier, cheaper model",
        )
    return Fraction(value) if isinstance(value, Fraction) else Fraction(f)


class PriceCurve:
    r"""An arbitrage-free price of noise variance, :math:`p(\delta) = \lceil q(1/\delta) \rceil`.

    Args:
        points: the seller's wished ``(variance, price_minor)`` points.  The curve is the
            largest arbitrage-free curve with :math:`q(x)/x` non-increasing that stays at
            or below every point (see the module docstring); ``adjusted`` lists points
            it had to lower.
    """

    def __init__(self, points: Sequence[Sequence[Any]]) -> None:
        if isinstance(points, str | bytes) or not isinstance(points, Sequence) or not points:
            raise InvalidInput(
                "a price curve needs at least one (variance, price_minor) point",
                hint="for example [[0.01, 5000], [0.1, 1500], [1.0, 400]]",
            )
        if len(points) > 1000:
            raise InvalidInput("a price curve takes at most 1000 points")
        pts: list[tuple[Fraction, int]] = []
        for p in points:
            if isinstance(p, str | bytes) or not isinstance(p, Sequence) or len(p) != 2:
                raise InvalidInput(f"each curve point must be [variance, price_minor], got {p!r}")
            pts.append((_variance(p[0], "curve variance"), check_minor(p[1], "curve price")))
        variances = [v for v, _ in pts]
        if len(set(variances)) != len(variances):
            raise InvalidInput("two curve points have the same variance")
        self.points = sorted(pts)
        # (precision x_j, price P_j)
        self._terms = [(1 / v, Fraction(price)) for v, price in self.points]

    def q(self, precision: Fraction) -> Fraction:
        """:math:`q(x) = \\min_j P_j \\max(1, x/x_j)` (exact; see the class docstring)."""
        return min(price * max(Fraction(1), precision / xj) for xj, price in self._terms)

    def price(self, variance: Any) -> int:
        """The price in minor units of a model with noise variance ``variance``."""
        v = _variance(variance)
        # ceil, but not of float noise: 1 / (1/3) is 3.0000000000000004, whose price must
        # not exceed the prices of precision 1 and 2 bought together (subadditivity)
        return math.ceil(self.q(1 / v) - PRICE_TOLERANCE)

    __call__ = price

    @property
    def adjusted(self) -> list[dict[str, Any]]:
        """Points whose wished price the arbitrage-free curve had to lower."""
        out = []
        for v, wished in self.points:
            got = self.price(v)
            if got < wished:
                out.append({"variance": float(v), "wished_minor": wished, "price_minor": got})
        return out

    def config(self) -> list[list[Any]]:
        return [[float(v), p] for v, p in self.points]


@dataclass(frozen=True)
class ModelArbitrage:
    """An attack: buy ``purchases`` (variances), combine, get ``target_variance`` cheaper.

    ``weights`` are the inverse-variance weights of the combination; ``extra_noise`` is
    the variance to add afterwards to land exactly on the target (0 if not needed).
    """

    target_variance: float
    target_price: float
    purchases: tuple[float, ...]
    total_price: float
    combined_variance: float
    weights: tuple[float, ...]
    extra_noise: float
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_model_price_arbitrage(
    price_fn: Callable[[float], float],
    variances: Sequence[float],
    *,
    max_purchases: int = 4,
) -> ModelArbitrage | None:
    r"""Search a price function of noise variance for arbitrage (Chen et al. 2019).

    Checks on the grid ``variances``: (1) monotonicity, a less noisy model priced below
    a noisier one (buy it and add noise); (2) combinations, any multiset of at most
    ``max_purchases`` grid purchases whose combined precision :math:`\sum_i 1/\delta_i`
    reaches a target's :math:`1/\delta_0` for strictly less than :math:`p(\delta_0)`
    (the subadditivity condition, searched exhaustively on the grid).

    Returns the cheapest-found attack, or ``None`` if the grid shows no arbitrage.
    """
    if (
        isinstance(max_purchases, bool)
        or not isinstance(max_purchases, int)
        or not 1 <= max_purchases <= 8
    ):
        raise InvalidInput("max_purchases must be an integer between 1 and 8")
    grid = sorted({_variance(v) for v in variances})
    if len(grid) < 2:
        raise InvalidInput("give at least two distinct variances to check")
    if len(grid) > 200:
        raise InvalidInput("give at most 200 variances to check")
    prices = [Fraction(price_fn(float(v))) for v in grid]
    # (1) monotone: delta_a < delta_b must have p(delta_a) >= p(delta_b)
    for a in range(len(grid)):
        for b in range(a + 1, len(grid)):
            if prices[a] < prices[b]:
                return ModelArbitrage(
                    float(grid[b]),
                    float(prices[b]),
                    (float(grid[a]),),
                    float(prices[a]),
                    float(grid[a]),
                    (1.0,),
                    float(grid[b] - grid[a]),
                    "monotonicity",
                )
    # (2) combinations of purchases reaching the target precision more cheaply
    prec = [1 / v for v in grid]
    best: ModelArbitrage | None = None
    for t in range(len(grid)):
        need, budget = prec[t], prices[t]
        for r in range(2, max_purchases + 1):
            for combo in itertools.combinations_with_replacement(range(len(grid)), r):
                cost = sum(prices[i] for i in combo)
                if cost >= budget:
                    continue
                total = sum(prec[i] for i in combo)
                if total < need:
                    continue
                saving = budget - cost
                if best is None or saving > Fraction(best.target_price - best.total_price):
                    combined = 1 / total
                    best = ModelArbitrage(
                        float(grid[t]),
                        float(budget),
                        tuple(float(grid[i]) for i in combo),
                        float(cost),
                        float(combined),
                        tuple(float(prec[i] / total) for i in combo),
                        float(grid[t] - combined),
                        "subadditivity",
                    )
    return best


def combine_models(
    thetas: Sequence[np.ndarray], variances: Sequence[float]
) -> tuple[np.ndarray, float]:
    """Inverse-variance average of independent noisy models: ``(theta, variance)``.

    The minimum-variance unbiased combination of :math:`\\hat\\theta_i = \\theta^* + w_i`,
    :math:`w_i \\sim N(0, \\delta_i I)`: weights :math:`(1/\\delta_i) / \\sum_j 1/\\delta_j`,
    variance :math:`(\\sum_i 1/\\delta_i)^{-1}` (the buyer's side of the arbitrage).
    """
    if len(thetas) != len(variances) or not thetas:
        raise InvalidInput("give one variance per model, and at least one model")
    prec = np.array([1.0 / float(_variance(v)) for v in variances])
    w = prec / prec.sum()
    stacked = np.stack([np.asarray(t, dtype=np.float64) for t in thetas])
    return np.tensordot(w, stacked, axes=1), float(1.0 / prec.sum())


# -- the model sold ------------------------------------------------------------------


class NoisyLinearModel:
    """A linear model delivered to a buyer: standardise, then ``X @ coef.T + intercept``.

    Built from the JSON payload :meth:`NoisyModelSeller.release` returns; predicts like
    the scikit-learn estimator it was perturbed from.
    """

    def __init__(self, payload: Mapping[str, Any]) -> None:
        try:
            self.task = str(payload["task"])
            self.features = list(payload["features"])
            self.mean = np.asarray(payload["scaler_mean"], dtype=np.float64)
            self.scale = np.asarray(payload["scaler_scale"], dtype=np.float64)
            self.coef = np.atleast_2d(np.asarray(payload["coef"], dtype=np.float64))
            self.intercept = np.atleast_1d(np.asarray(payload["intercept"], dtype=np.float64))
            self.classes = list(payload.get("classes") or [])
            self.variance = float(payload["variance"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a noisy-model payload: {exc}") from None
        if self.coef.shape[1] != len(self.features):
            raise InvalidInput("the payload's coefficients do not match its features")

    def decision_function(self, x: Any) -> np.ndarray:
        xs = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        out = xs @ self.coef.T + self.intercept
        return out[:, 0] if out.shape[1] == 1 else out

    def predict(self, x: Any) -> np.ndarray:
        d = self.decision_function(x)
        if self.task == "regression":
            return d
        if d.ndim == 1:
            return np.asarray(self.classes, dtype=object)[(d > 0).astype(int)]
        return np.asarray(self.classes, dtype=object)[np.argmax(d, axis=1)]


class NoisyModelSeller:
    """Train :math:`\\theta^*` once, then release :math:`\\theta^* + N(0, \\delta I)`.

    Args:
        task: ``"classification"`` (L2 logistic regression) or ``"regression"`` (ridge).
        alpha: ridge penalty / inverse of logistic ``C``.
        random_state: seed of the noise when :meth:`release` is not given one.

    Attributes:
        theta_: the optimal parameters, flattened ``[coef..., intercept...]``.
    """

    def __init__(
        self, task: str = "classification", alpha: float = 1.0, random_state: Any = None
    ) -> None:
        if task not in ("classification", "regression"):
            raise InvalidInput(
                f"unknown task {task!r}", hint="use 'classification' or 'regression'"
            )
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha > 0:
            raise InvalidInput(f"alpha must be a positive number, got {alpha!r}")
        self.task = task
        self.alpha = float(alpha)
        self.random_state = random_state

    def fit(self, x: Any, y: Any, feature_names: Sequence[str] | None = None) -> NoisyModelSeller:
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.preprocessing import StandardScaler

        from databazaar.valuation._validate import check_features

        xa = check_features(x, "x")
        ya = np.asarray(y)
        if ya.shape[0] != xa.shape[0]:
            raise InvalidInput(f"x has {xa.shape[0]} rows but y has {ya.shape[0]}")
        self.scaler_ = StandardScaler().fit(xa)
        scale = np.where(self.scaler_.scale_ > 0, self.scaler_.scale_, 1.0)
        xs = (xa - self.scaler_.mean_) / scale
        if self.task == "regression":
            model = Ridge(alpha=self.alpha).fit(xs, ya.astype(np.float64))
            self.classes_: list[Any] = []
        else:
            if len(np.unique(ya)) < 2:
                raise InvalidInput("classification needs at least two classes in the labels")
            model = LogisticRegression(C=1.0 / self.alpha, max_iter=2000).fit(xs, ya)
            self.classes_ = [c.item() if isinstance(c, np.generic) else c for c in model.classes_]
        self.coef_ = np.atleast_2d(model.coef_).astype(np.float64)
        self.intercept_ = np.atleast_1d(model.intercept_).astype(np.float64)
        self.scale_ = scale
        self.features_ = (
            list(feature_names)
            if feature_names is not None
            else [f"x{i}" for i in range(xa.shape[1])]
        )
        self.theta_ = np.concatenate([self.coef_.ravel(), self.intercept_])
        return self

    def _payload(self, theta: np.ndarray, variance: float) -> dict[str, Any]:
        n_coef = self.coef_.size
        return {
            "task": self.task,
            "features": self.features_,
            "classes": self.classes_,
            "scaler_mean": self.scaler_.mean_.tolist(),
            "scaler_scale": self.scale_.tolist(),
            "coef": theta[:n_coef].reshape(self.coef_.shape).tolist(),
            "intercept": theta[n_coef:].tolist(),
            "variance": variance,
        }

    def release(self, variance: Any, random_state: Any = None) -> dict[str, Any]:
        """The payload of :math:`\\theta^* + w`, :math:`w \\sim N(0, \\delta I)` (JSON-ready)."""
        if not hasattr(self, "theta_"):
            raise InvalidInput("fit the seller's model before releasing noisy versions")
        v = float(_variance(variance))
        rng = np.random.default_rng(self.random_state if random_state is None else random_state)
        theta = self.theta_ + rng.normal(0.0, math.sqrt(v), size=self.theta_.shape)
        return self._payload(theta, v)

    def expected_error(
        self, variance: Any, x: Any, y: Any, *, n_draws: int = 50, random_state: Any = 0
    ) -> float:
        """Expected test error of the noisy model: MSE (regression) or 0/1 error.

        Regression uses the exact formula :math:`E\\|X\\hat\\theta - y\\|^2/n =
        \\mathrm{MSE}(\\theta^*) + \\delta\\,(\\overline{\\|\\tilde x\\|^2} + 1)` over
        standardised rows (the 1 is the intercept); classification averages
        ``n_draws`` noise draws.
        """
        v = float(_variance(variance))
        xa = np.asarray(x, dtype=np.float64)
        xs = (xa - self.scaler_.mean_) / self.scale_
        if self.task == "regression":
            pred = xs @ self.coef_.T[:, 0] + self.intercept_[0]
            mse = float(np.mean((pred - np.asarray(y, dtype=np.float64)) ** 2))
            return mse + v * float(np.mean(np.einsum("ij,ij->i", xs, xs)) + 1.0)
        rng = np.random.default_rng(random_state)
        errs = []
        ya = np.asarray(y)
        for _ in range(n_draws):
            model = NoisyLinearModel(self.release(v, rng))
            errs.append(float(np.mean(model.predict(xa) != ya)))
        return float(np.mean(errs))


@register
class NoisyModelPricing(PricingMechanism):
    """Price noisy models on an arbitrage-free curve (see :class:`PriceCurve`).

    Args:
        curve: ``[[variance, price_minor], ...]`` wished points.
        label_column: the column the model predicts.
        task: ``"classification"`` or ``"regression"``.
        alpha: regularisation strength of the optimal model.
        min_variance: the least noise ever sold (the seller keeps :math:`\\theta^*`).
    """

    name = "model"
    label = "Noisy models (model-based)"
    summary = (
        "Buyers buy a model trained on the data with a chosen noise variance; less "
        "noise costs more along an arbitrage-free price curve (Chen, Koutris, Kumar)."
    )
    example: ClassVar[dict[str, Any]] = {
        "curve": [[0.01, 5000], [0.1, 1500], [1.0, 400]],
        "label_column": "label",
        "task": "classification",
    }
    menu_order = 3
    deliverable = "model"
    request_fields = ("variance",)

    def __init__(
        self,
        curve: Sequence[Sequence[Any]],
        label_column: str = "label",
        task: str = "classification",
        alpha: float = 1.0,
        min_variance: float = 1e-4,
    ) -> None:
        self.curve = PriceCurve(curve)
        if not isinstance(label_column, str) or not label_column:
            raise InvalidInput("label_column must name the column the model predicts")
        NoisyModelSeller(task, alpha)  # validates task and alpha
        self.label_column = label_column
        self.task = task
        self.alpha = float(alpha)
        self.min_variance = float(_variance(min_variance, "min_variance"))

    def config(self) -> dict[str, Any]:
        return {
            "curve": self.curve.config(),
            "label_column": self.label_column,
            "task": self.task,
            "alpha": self.alpha,
            "min_variance": self.min_variance,
        }

    def quote(self, request: Mapping[str, Any] | None = None) -> Quote:
        """Price ``{"variance": delta}``: a model with noise :math:`N(0, \\delta I)`."""
        req = self._request(request)
        if "variance" not in req:
            raise InvalidInput("a model quote needs the noise 'variance' you want")
        v = _variance(req["variance"])
        if float(v) < self.min_variance:
            raise InvalidInput(
                f"the least noise sold is variance {self.min_variance:g}, asked {float(v):g}",
                hint="ask for a larger variance",
            )
        return Quote(
            self.name,
            self.curve.price(v),
            self.deliverable,
            {
                "variance": float(v),
                "precision": float(1 / v),
                "curve_adjusted": self.curve.adjusted,
            },
        )
