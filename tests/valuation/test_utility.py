"""Utility: scores, defaults, caching, failures, inputs and every error path."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import f1_score, get_scorer

from databazaar.core.errors import InvalidInput
from databazaar.valuation.groups import GroupUtility
from databazaar.valuation.utility import GameUtility, Utility, as_indices


def test_score_equals_a_manual_fit(tiny_data) -> None:  # type: ignore[no-untyped-def]
    x_tr, y_tr, x_te, y_te = tiny_data
    u = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te)
    idx = [0, 1, 2, 5, 6]
    manual = LogisticRegression().fit(x_tr[idx], y_tr[idx]).score(x_te, y_te)
    assert u(idx) == pytest.approx(manual)
    assert u(range(8)) == pytest.approx(LogisticRegression().fit(x_tr, y_tr).score(x_te, y_te))


def test_default_score_is_majority_rate_for_accuracy(tiny_data) -> None:  # type: ignore[no-untyped-def]
    x_tr, y_tr, x_te, y_te = tiny_data
    u = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te)
    majority = np.bincount(y_te).max() / len(y_te)
    assert u.default_score == pytest.approx(majority)
    assert u([]) == pytest.approx(majority)
    other = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te, scorer="f1")
    assert other([]) == 0.0
    explicit = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te, default_score=0.25)
    assert explicit(()) == 0.25


def test_scorer_names_and_callables(tiny_data) -> None:  # type: ignore[no-untyped-def]
    x_tr, y_tr, x_te, y_te = tiny_data
    model = LogisticRegression().fit(x_tr, y_tr)
    by_name = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te, scorer="f1_macro")
    expected = f1_score(y_te, model.predict(x_te), average="macro")
    assert by_name(range(8)) == pytest.approx(expected)

    def neg_errors(m, x, y):  # type: ignore[no-untyped-def]
        return -float(np.sum(m.predict(x) != y))

    custom = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te, scorer=neg_errors)
    assert custom(range(8)) == -np.sum(model.predict(x_te) != y_te)
    scorer_obj = Utility(
        LogisticRegression(), x_tr, y_tr, x_te, y_te, scorer=get_scorer("accuracy")
    )
    fast = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te, scorer="accuracy")
    assert scorer_obj(range(8)) == pytest.approx(fast(range(8)))


def test_regression_utility() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=40)
    u = Utility(LinearRegression(), x[:20], y[:20], x[20:], y[20:], scorer="r2")
    assert u(range(20)) > 0.95
    assert u([]) == 0.0


def test_cache_and_counters(logreg_utility) -> None:  # type: ignore[no-untyped-def]
    u = logreg_utility
    a = u([3, 1, 2, 1])
    assert (u.n_evaluations, u.n_cache_hits) == (1, 0)
    assert u(np.array([1, 2, 3])) == a  # order and repeats do not matter
    assert u({2, 3, 1}) == a
    assert (u.n_evaluations, u.n_cache_hits) == (1, 2)
    assert u.cache_size == 1
    u([])  # the empty set is never evaluated or cached
    assert u.n_evaluations == 1
    u.clear_cache()
    u([1, 2, 3])
    assert u.n_evaluations == 2
    u.reset_counters()
    assert (u.n_evaluations, u.n_cache_hits) == (0, 0)


def test_cache_off_and_lru_bound(utility_factory) -> None:  # type: ignore[no-untyped-def]
    off = utility_factory(cache=False)
    off([0, 1])
    off([0, 1])
    assert (off.n_evaluations, off.n_cache_hits, off.cache_size) == (2, 0, 0)
    small = utility_factory(cache=2)
    for s in ([0, 1], [0, 2], [0, 3]):
        small(s)
    assert small.cache_size == 2
    small([0, 1])  # evicted as least recently used
    assert small.n_evaluations == 4
    small([0, 3])
    assert small.n_cache_hits == 1


def test_pickling_drops_the_cache_but_keeps_everything_else(logreg_utility) -> None:  # type: ignore[no-untyped-def]
    u = logreg_utility
    value = u([0, 1, 4])
    copy = pickle.loads(pickle.dumps(u))
    assert copy.cache_size == 0
    assert copy([0, 1, 4]) == value
    assert copy.n_evaluations == 2


def test_single_class_coalitions_give_the_default_score(tiny_data) -> None:  # type: ignore[no-untyped-def]
    x_tr, y_tr, x_te, y_te = tiny_data
    u = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te)
    same = np.flatnonzero(y_tr == y_tr[0])[:2]
    assert u(same) == u.default_score
    assert u.n_errors == 1
    assert "class" in u.last_error
    strict = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te, catch_errors=False)
    with pytest.raises(ValueError, match="class"):
        strict(same)


def test_nan_score_is_a_failure(tiny_data) -> None:  # type: ignore[no-untyped-def]
    x_tr, y_tr, x_te, y_te = tiny_data
    u = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te, scorer=lambda m, x, y: float("nan"))
    assert u(range(8)) == 0.0
    assert u.n_errors == 1


def test_clone_model_false_and_blas_threads(tiny_data) -> None:  # type: ignore[no-untyped-def]
    x_tr, y_tr, x_te, y_te = tiny_data
    ref = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te)
    inplace = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te, clone_model=False)
    free = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te, blas_threads=None)
    for s in ([0, 1, 2, 3], [1, 4, 5, 6, 7], range(8)):
        assert inplace(s) == ref(s) == free(s)


def test_dataframes_and_string_labels(tiny_data) -> None:  # type: ignore[no-untyped-def]
    x_tr, y_tr, x_te, y_te = tiny_data
    names = np.array(["cat", "dog"])
    frame = pd.DataFrame(x_tr, columns=list("abcd"))
    u = Utility(
        LogisticRegression(),
        frame,
        pd.Series(names[y_tr]),
        pd.DataFrame(x_te, columns=list("abcd")),
        names[y_te],
    )
    ref = Utility(LogisticRegression(), x_tr, y_tr, x_te, y_te)
    assert u(range(8)) == ref(range(8))
    assert u.n_players == u.n_train == len(u) == 8


@pytest.mark.parametrize(
    "indices",
    [
        [0, 2],
        np.array([2, 0]),
        (0, 2),
        {0, 2},
        (i for i in (0, 2)),
        np.array([True, False, True] + [False] * 5),
    ],
)
def test_index_forms(logreg_utility, indices) -> None:  # type: ignore[no-untyped-def]
    assert logreg_utility(indices) == logreg_utility([0, 2])
    assert as_indices(np.array([2.0, 0.0]), 3).tolist() == [0, 2]


@pytest.mark.parametrize(
    ("indices", "match"),
    [([0, 8], "out of range"), ([-1], "out of range"), ([0.5], "integers"), (["a"], "integers")],
)
def test_bad_indices(logreg_utility, indices, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=match):
        logreg_utility(indices)


def test_bad_mask_length(logreg_utility) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="mask"):
        logreg_utility(np.array([True, False]))


# -- input errors ---------------------------------------------------------------------------


def _args(tiny_data):  # type: ignore[no-untyped-def]
    x_tr, y_tr, x_te, y_te = (a.copy() for a in tiny_data)
    return [LogisticRegression(), x_tr, y_tr, x_te, y_te]


def test_nan_in_features_and_labels(tiny_data) -> None:  # type: ignore[no-untyped-def]
    args = _args(tiny_data)
    args[1][2, 1] = np.nan
    with pytest.raises(InvalidInput, match="x_train contains NaN"):
        Utility(*args)
    args = _args(tiny_data)
    args[3][0, 0] = np.inf
    with pytest.raises(InvalidInput, match="x_test contains NaN"):
        Utility(*args)
    args = _args(tiny_data)
    args[2] = args[2].astype(float)
    args[2][1] = np.nan
    with pytest.raises(InvalidInput, match="y_train contains NaN"):
        Utility(*args)


def test_mismatched_lengths_and_widths(tiny_data) -> None:  # type: ignore[no-untyped-def]
    args = _args(tiny_data)
    args[2] = args[2][:-1]
    with pytest.raises(InvalidInput, match="same length"):
        Utility(*args)
    args = _args(tiny_data)
    args[4] = args[4][:5]
    with pytest.raises(InvalidInput, match="y_test has 5 labels"):
        Utility(*args)
    args = _args(tiny_data)
    args[3] = args[3][:, :3]
    with pytest.raises(InvalidInput, match="features"):
        Utility(*args)


def test_empty_test_set(tiny_data) -> None:  # type: ignore[no-untyped-def]
    args = _args(tiny_data)
    args[3], args[4] = args[3][:0], args[4][:0]
    with pytest.raises(InvalidInput, match="x_test is empty"):
        Utility(*args)


def test_bad_scorer_model_cache_default(tiny_data) -> None:  # type: ignore[no-untyped-def]
    args = _args(tiny_data)
    with pytest.raises(InvalidInput, match="unknown scorer 'acuracy'"):
        Utility(*args, scorer="acuracy")
    with pytest.raises(InvalidInput, match="scorer must be"):
        Utility(*args, scorer=3)
    with pytest.raises(InvalidInput, match="fit"):
        Utility(object(), *args[1:])
    with pytest.raises(InvalidInput, match="cache"):
        Utility(*args, cache=-1)
    with pytest.raises(InvalidInput, match="default_score"):
        Utility(*args, default_score=float("nan"))
    with pytest.raises(InvalidInput, match="default_score"):
        Utility(*args, default_score="high")
    with pytest.raises(InvalidInput, match="blas_threads"):
        Utility(*args, blas_threads=0)


def test_unknown_scorer_suggests_close_names(tiny_data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as info:
        Utility(*_args(tiny_data), scorer="f1_macr")
    assert "f1_macro" in str(info.value)


# -- GameUtility and GroupUtility --------------------------------------------------------------


def test_game_utility() -> None:
    g = GameUtility(lambda s: float(sum(s)), 4)
    assert g([3, 1]) == 4.0 and g([]) == 0.0 and g.n_players == 4
    g([1, 3])
    assert (g.n_evaluations, g.n_cache_hits) == (1, 1)
    assert "GameUtility" in repr(g)
    with pytest.raises(InvalidInput, match="callable"):
        GameUtility(3, 4)  # type: ignore[arg-type]
    for bad in (0, -1, 2.0, True):
        with pytest.raises(InvalidInput, match="n_players"):
            GameUtility(lambda s: 0.0, bad)  # type: ignore[arg-type]


def test_group_utility_maps_groups_to_points() -> None:
    seen = []

    def f(s):  # type: ignore[no-untyped-def]
        seen.append(s)
        return float(len(s))

    g = GroupUtility(GameUtility(f, 5), np.array([7, 3, 7, 9, 3]))
    assert g.ids.tolist() == [3, 7, 9]
    assert g.n_players == len(g) == 3
    assert g([0]) == 2.0 and seen[-1] == (1, 4)
    assert g([1, 2]) == 3.0 and seen[-1] == (0, 2, 3)
    assert g([]) == 0.0
    assert g.points([2, 0]).tolist() == [1, 4, 3]
    assert g.n_evaluations == 2
    with pytest.raises(InvalidInput, match="groups has shape"):
        GroupUtility(GameUtility(f, 5), [1, 2])
    with pytest.raises(InvalidInput, match="out of range"):
        g([3])


def test_blas_limit_is_process_wide_reference_counted_and_restored(utility_factory) -> None:  # type: ignore[no-untyped-def]
    from threadpoolctl import threadpool_info

    from databazaar.core.parallel import blas_limit
    from databazaar.valuation.montecarlo import MaxSamples, TMCShapley

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    with blas_limit(1):
        assert set(blas_threads()) <= {1}
        with blas_limit(1):
            pass
        assert set(blas_threads()) <= {1}  # the inner exit does not restore
    assert blas_threads() == before
    # concurrent fits on threads enter and leave the limit in any interleaving
    est = TMCShapley(0.0, stopping=MaxSamples(6), n_jobs=2, backend="threads", batch_size=1)
    est.fit(utility_factory())
    assert blas_threads() == before
