"""Buying a mixture: which market text products to buy, how many tokens of each, at what cost.

:func:`plan_mixture` treats each market product as a domain of a data mixture. The text
of a product is what the buyer may see through the market's public API: the full table
of a product the buyer already has access to (owner or grantee), else the product's
public preview rows. A BPE tokenizer is trained on that text plus the buyer's validation
texts; DDO (:class:`~databazaar.mixture.ddo.DDO`, Kang et al., arXiv 2407.20177) then runs
its proxy trainings at a small proxy budget with the buyer's validation set as the only
evaluation set, so the fitted surrogate predicts the buyer's validation loss. The
weights are applied to the buyer's token budget and turned into rows (``tokens /
measured tokens per row``, capped at the product's row count) and money:

* a product under query-based pricing (:class:`~databazaar.market.pricing.QueryPricing`)
  is priced for the cheapest selection on one priced column whose rows cover the rows
  needed (values taken in order of price per row);
* any other product costs its quote for the whole dataset (posted price).

Products the buyer already has access to cost nothing. If the DDO plan costs more than
the money budget, the affordable subset of products that keeps the most DDO weight is
chosen, its weights renormalised, and the plan says so (``trimmed``).

:func:`buy_plan` buys a plan's products through
:meth:`Economics.buy <databazaar.market.economics.Economics.buy>`, the market's one booking
path: one order per product, each keyed ``<key>:<slug>`` so a replay of the same plan
purchase moves no money. Every line is re-quoted and the total and balance are checked
before the first order is booked, so bad input buys nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from databazaar.core.errors import Conflict, InvalidInput, PaymentError
from databazaar.market.economics import Economics
from databazaar.market.pricing import QueryPricing
from databazaar.market.schemas import AccountOut

MAX_PRODUCTS = 12
TEXT_TYPES = ("string", "text")


@dataclass(frozen=True)
class PlanSettings:
    """Proxy runs of the plan: small and fast by default (seconds on one core)."""

    proxy_budget: int = 4096
    vocab_size: int = 320
    block_size: int = 32
    n_layer: int = 1
    n_embd: int = 32
    n_head: int = 2
    batch_size: int = 8
    lr: float = 3e-3
    seed: int = 0

    def proxy(self) -> Any:
        from databazaar.lm.model import ModelConfig
        from databazaar.lm.train import TrainConfig
        from databazaar.mixture.proxy import ProxyConfig

        return ProxyConfig(
            model=ModelConfig(
                n_layer=self.n_layer,
                n_embd=self.n_embd,
                n_head=self.n_head,
                n_positions=self.block_size,
            ),
            train=TrainConfig(batch_size=self.batch_size, lr=self.lr),
            eval_blocks=32,
            num_threads=1,
        )


class PlanLine(BaseModel):
    """One product of a plan (``request`` is what :func:`buy_plan` sends for it)."""

    slug: str
    text_column: str
    source: str  # "owned" or "preview": the rows the proxies trained on
    weight: float
    tokens: int
    rows: int
    n_rows: int
    tokens_per_row: float
    available_tokens: int  # estimated tokens of the whole product; fewer means repeats
    mechanism: str
    cost_minor: int
    request: dict[str, Any] = Field(default_factory=dict)


class MixturePlan(BaseModel):
    """What to buy: lines per product, the total cost and the predicted loss."""

    lines: list[PlanLine]
    token_budget: int
    money_budget_minor: int
    total_minor: int
    predicted_loss: float | None
    reference_loss: float
    trimmed: bool
    note: str
    seed: int
    ddo_weights: dict[str, float]

    def to_buy(self) -> list[dict[str, Any]]:
        """The lines to buy (``{"slug", "request"}`` for :func:`buy_plan`)."""
        return [
            {"slug": x.slug, "request": x.request}
            for x in self.lines
            if x.mechanism not in ("none", "owned")
        ]


def _text_column(ver: Any, slug: str, wanted: str) -> str:
    texts = [c.name for c in ver.columns if c.type in TEXT_TYPES]
    if not texts:
        raise InvalidInput(
            f"product {slug!r} has no text column",
            hint="a mixture plan takes text products (a string column of documents)",
        )
    if wanted in texts:
        return wanted
    if len(texts) == 1:
        return texts[0]
    raise InvalidInput(
        f"product {slug!r} has several text columns {texts} and none is named {wanted!r}",
        hint="name the text column with text_column",
    )


def _validation_texts(validation: Sequence[Any], text_column: str) -> list[str]:
    if isinstance(validation, str | bytes) or not isinstance(validation, Sequence):
        raise InvalidInput("the validation set must be a list of texts or of records")
    if not validation:
        raise InvalidInput("the validation set is empty")
    out: list[str] = []
    for i, row in enumerate(validation):
        if isinstance(row, Mapping):
            if text_column not in row:
                raise InvalidInput(
                    f"validation row {i} has columns {sorted(map(str, row))}, not the products' "
                    f"text column {text_column!r}",
                    hint="send the validation set in the products' schema",
                )
            row = row[text_column]
        if not isinstance(row, str):
            raise InvalidInput(f"validation row {i}: the text must be a string")
        if row.strip():
            out.append(row)
    if not out:
        raise InvalidInput("the validation set has no non-empty text")
    return out


def _check_budgets(token_budget: Any, money_budget_minor: Any) -> tuple[int, int]:
    for name, val in (("token budget", token_budget), ("money budget", money_budget_minor)):
        if isinstance(val, bool) or not isinstance(val, int | float) or not math.isfinite(val):
            raise InvalidInput(f"the {name} must be a number, got {val!r}")
        if val <= 0:
            raise InvalidInput(f"the {name} must be positive, got {val!r}")
    return int(token_budget), int(money_budget_minor)


def _query_line(
    econ: Economics, slug: str, mech: QueryPricing, rows: int, n_rows: int
) -> tuple[int, dict[str, Any]]:
    """Cheapest one-column selection with at least ``rows`` rows: ``(price, request)``."""
    if rows >= n_rows:
        full = {"query": {"where": {}}}
        return econ.quote(slug, full).price_minor, full
    counts_by_col = {
        col: econ.table(slug)[col].value_counts().to_dict() for col in mech.price_points
    }
    best: tuple[int, dict[str, Any]] | None = None
    for col, points in mech.price_points.items():
        counts = counts_by_col[col]
        order = sorted(points, key=lambda v: (points[v] / max(counts.get(v, 0), 1e-9), repr(v)))
        got, chosen = 0, []
        for value in order:
            if got >= rows:
                break
            if counts.get(value, 0) > 0:
                chosen.append(value)
                got += int(counts[value])
        request = {"query": {"where": {col: chosen}}}
        price = econ.quote(slug, request).price_minor
        if best is None or price < best[0]:
            best = (price, request)
    assert best is not None
    return best


def _tokens_per_row(texts: Sequence[str]) -> float:
    """Rough tokens per row before the tokenizer exists: ~4 characters per BPE token.

    Used for the cheapest-amount check only; plan lines use the trained tokenizer."""
    return max(1.0, sum(len(t) for t in texts) / len(texts) / 4.0)


def _price(
    econ: Economics, slug: str, rows: int, n_rows: int, owned: bool
) -> tuple[str, int, dict[str, Any]]:
    if rows <= 0:
        return "none", 0, {}
    if owned:
        return "owned", 0, {}
    mech = econ.mechanism_for(slug)
    if isinstance(mech, QueryPricing):
        price, request = _query_line(econ, slug, mech, rows, n_rows)
        return mech.name, price, request
    return mech.name, econ.quote(slug, {}).price_minor, {}


def plan_mixture(
    econ: Economics,
    account: AccountOut,
    slugs: Sequence[str],
    validation: Sequence[Any],
    *,
    token_budget: int,
    money_budget_minor: int,
    text_column: str = "text",
    settings: PlanSettings | None = None,
) -> MixturePlan:
    """Plan which of ``slugs`` to buy and how many tokens of each for ``token_budget``.

    Raises :class:`InvalidInput` for fewer than two or unknown-text products, a
    validation set without the products' text column, budgets that are not positive,
    and a money budget below the cheapest usable product (nothing is bought either way).
    """
    from databazaar.lm.corpus import MultiDomainCorpus
    from databazaar.lm.data import pack_blocks
    from databazaar.mixture.api import prepare_data
    from databazaar.mixture.ddo import DDO
    from databazaar.mixture.scaling import surrogate_loss

    cfg = settings or PlanSettings()
    tokens, money = _check_budgets(token_budget, money_budget_minor)
    if isinstance(slugs, str) or len(slugs) < 2 or len(slugs) > MAX_PRODUCTS:
        raise InvalidInput(f"a mixture plan takes 2 to {MAX_PRODUCTS} products")
    if len(set(slugs)) != len(slugs):
        raise InvalidInput("the plan lists a product twice")
    val_texts = _validation_texts(validation, text_column)
    market = econ.market
    docs: dict[str, list[str]] = {}
    info: dict[str, tuple[str, str, int, bool]] = {}
    for slug in slugs:
        prod = market.get_product(slug, account)
        if prod.latest is None:
            raise Conflict(f"product {slug!r} has no published version")
        col = _text_column(prod.latest, slug, text_column)
        owned = market.has_access(account, slug)
        rows = econ.table(slug).to_dict(orient="records") if owned else prod.latest.preview
        texts = [r[col] for r in rows if isinstance(r.get(col), str) and r[col].strip()]
        if not texts:
            raise InvalidInput(f"product {slug!r} shows no text in column {col!r}")
        docs[slug] = texts
        info[slug] = (col, "owned" if owned else "preview", prod.latest.n_rows, owned)
    if tokens < cfg.block_size * len(slugs):
        raise InvalidInput(
            f"token budget {tokens} is below the cheapest usable amount "
            f"({cfg.block_size} tokens of each of {len(slugs)} products)"
        )
    tpr = {s: _tokens_per_row(docs[s]) for s in slugs}
    cheapest = min(
        _price(econ, s, math.ceil(cfg.block_size / tpr[s]), info[s][2], info[s][3])[1]
        for s in slugs
    )
    if cheapest > money:
        raise InvalidInput(
            f"money budget {money} is below the cheapest usable amount {cheapest} (minor units)",
            hint="raise the money budget or add cheaper products",
        )
    corpus = MultiDomainCorpus(train=docs, val={s: val_texts for s in slugs})
    tokenizer, data = prepare_data(corpus, vocab_size=cfg.vocab_size, block_size=cfg.block_size)
    val_blocks = pack_blocks(val_texts, tokenizer, cfg.block_size)
    if len(val_blocks) == 0:
        raise InvalidInput(
            f"the validation set has fewer than {cfg.block_size} tokens", hint="send more text"
        )
    data.val = {"validation": val_blocks}
    tpr = {
        s: sum(len(x) for x in tokenizer(docs[s], add_special_tokens=False)["input_ids"])
        / len(docs[s])
        for s in slugs
    }
    ddo = DDO(cfg.proxy_budget, proxy=cfg.proxy(), seed=cfg.seed, backend="threads").fit(data)

    def lines_for(weights: Mapping[str, float]) -> list[PlanLine]:
        out = []
        for s in slugs:
            col, source, n_rows, owned = info[s]
            tok = round(weights.get(s, 0.0) * tokens)
            rows = min(n_rows, math.ceil(tok / max(tpr[s], 1e-9))) if tok > 0 else 0
            mech, cost, request = _price(econ, s, rows, n_rows, owned)
            out.append(
                PlanLine(
                    slug=s,
                    text_column=col,
                    source=source,
                    weight=weights.get(s, 0.0),
                    tokens=tok,
                    rows=rows,
                    n_rows=n_rows,
                    tokens_per_row=tpr[s],
                    available_tokens=int(n_rows * tpr[s]),
                    mechanism=mech,
                    cost_minor=cost,
                    request=request,
                )
            )
        return out

    laws = [ddo.laws_[s] for s in slugs]
    ref = np.array([ddo.reference_weights_[s] for s in slugs])
    base = ddo.result_.details["reference_average_loss"]

    def predicted(weights: Mapping[str, float]) -> float | None:
        w = np.array([weights.get(s, 0.0) for s in slugs])
        val = surrogate_loss(laws, ref, w) - (len(slugs) - 1) * base
        return float(val) if math.isfinite(val) else None

    lines = lines_for(ddo.weights_)
    total = sum(line.cost_minor for line in lines)
    trimmed, note = False, "the DDO optimum fits the money budget"
    if total > money:
        best: tuple[float, list[PlanLine], dict[str, float]] | None = None
        for k in range(len(slugs) - 1, 0, -1):
            for subset in itertools.combinations(slugs, k):
                mass = sum(ddo.weights_[s] for s in subset)
                w = {s: ddo.weights_[s] / mass for s in subset}
                cand = lines_for(w)
                if sum(c.cost_minor for c in cand) <= money and (best is None or mass > best[0]):
                    best = (mass, cand, w)
        assert best is not None
        mass, lines, weights = best
        total = sum(line.cost_minor for line in lines)
        trimmed = True
        note = (
            f"the DDO optimum costs more than the money budget; kept the affordable products "
            f"holding {mass:.0%} of its weight"
        )
        pred = predicted(weights)
    else:
        pred = ddo.result_.details["predicted_average_loss"]
    return MixturePlan(
        lines=lines,
        token_budget=tokens,
        money_budget_minor=money,
        total_minor=int(total),
        predicted_loss=pred,
        reference_loss=float(base),
        trimmed=trimmed,
        note=note,
        seed=cfg.seed,
        ddo_weights=dict(ddo.weights_),
    )


def buy_plan(
    econ: Economics,
    account: AccountOut,
    items: Sequence[Mapping[str, Any]],
    idempotency_key: str,
    *,
    max_total_minor: int | None = None,
) -> list[Any]:
    """Buy each ``{"slug", "request"}`` item (a plan's lines with a cost) as one order.

    Every item is re-quoted first; a total above ``max_total_minor`` or the buyer's
    balance raises before anything is booked. Returns the sales (replays included).
    """
    if isinstance(items, str) or not isinstance(items, Sequence) or not items:
        raise InvalidInput("the plan has no products to buy")
    if len(items) > MAX_PRODUCTS:
        raise InvalidInput(f"a plan buys at most {MAX_PRODUCTS} products")
    if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 100:
        raise InvalidInput("the idempotency key must be 1-100 characters")
    quotes = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("slug"), str):
            raise InvalidInput("each plan item needs a product slug")
        slug, request = item["slug"], dict(item.get("request") or {})
        if slug in seen:
            raise InvalidInput(f"the plan lists {slug!r} twice")
        seen.add(slug)
        quotes.append((slug, request, econ.quote(slug, request).price_minor))
    total = sum(q[2] for q in quotes)
    if max_total_minor is not None and total > max_total_minor:
        raise InvalidInput(
            f"the plan now costs {total}, more than the budget {max_total_minor} (minor units)",
            hint="plan again",
        )
    balance = econ.market.account_by_name(account.username).balance_minor
    done = {o.idempotency_key for o in econ.market.orders_for(account, limit=1000)}
    need = sum(q[2] for q in quotes if f"{idempotency_key}:{q[0]}" not in done)
    if balance < need:
        raise PaymentError(
            f"insufficient balance for the plan: {balance} < {need} (minor units)",
            hint="deposit funds first",
        )
    return [
        econ.buy(account, slug, request, f"{idempotency_key}:{slug}") for slug, request, _ in quotes
    ]
