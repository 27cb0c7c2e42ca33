"""DPO/ORPO/RDPO/RORPO: losses on fixed tensors, the trainers' losses, bad input, a run."""

from __future__ import annotations

import copy
import json
import math

import pytest

from databazaar.core.errors import InvalidInput


def _t(*xs: float):  # type: ignore[no-untyped-def]
    import torch

    return torch.tensor(xs, dtype=torch.float64)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_dpo_loss_equals_hand_computed_values() -> None:
    from databazaar.alignment import dpo_loss

    loss = dpo_loss(_t(-1.0, -2.0), _t(-3.0, -1.5), _t(-1.5, -2.0), _t(-2.0, -1.0), beta=0.1)
    # pair 1: margin (−1+1.5) − (−3+2) = 1.5; pair 2: (0) − (−0.5) = 0.5
    expected = [_softplus(-0.15), _softplus(-0.05)]
    assert loss.tolist() == pytest.approx(expected, abs=1e-12)


def test_orpo_loss_equals_hand_computed_values() -> None:
    from databazaar.alignment import orpo_loss

    loss = orpo_loss(_t(-0.5, -2.0), _t(-1.0, -0.25), _t(0.5, 2.0), beta=0.1)

    def odds(m: float) -> float:
        return m - math.log(1 - math.exp(m))

    expected = [
        0.5 + 0.1 * _softplus(-(odds(-0.5) - odds(-1.0))),
        2.0 + 0.1 * _softplus(-(odds(-2.0) - odds(-0.25))),
    ]
    assert loss.tolist() == pytest.approx(expected, abs=1e-12)
    assert expected[0] == pytest.approx(
        0.5 + 0.1 * 0.3202998, abs=1e-6
    )  # log odds 0.43275 vs -0.54133


def test_rationale_term_equals_hand_computed_values() -> None:
    from databazaar.alignment import rationale_loss

    assert rationale_loss(_t(-12.0, -3.5), 0.1).tolist() == pytest.approx([1.2, 0.35])
    assert rationale_loss(_t(-12.0), 0.0).tolist() == [0.0]


def _first_batch(trainer):  # type: ignore[no-untyped-def]
    return next(iter(trainer.get_train_dataloader()))


@pytest.mark.parametrize("base,rat", [("dpo", "rdpo"), ("orpo", "rorpo")])
def test_rationale_trainers_add_exactly_gamma_times_rationale_nll(
    tiny_policy, pairs, tmp_path, base, rat
) -> None:  # type: ignore[no-untyped-def]
    import torch

    from databazaar.alignment.preference import PreferenceConfig, build_trainer
    from databazaar.lm.local_backend import LocalModelBackend
    from databazaar.lm.pairs import rationale_conversation

    model, tok = tiny_policy
    model = copy.deepcopy(model)
    ref = copy.deepcopy(model).eval()
    cfg = dict(batch_size=8, steps=1, random_state=0)

    def loss_of(method: str, gamma: float) -> torch.Tensor:
        c = PreferenceConfig(method=method, gamma=gamma, **cfg)
        tr = build_trainer(model, tok, pairs, tmp_path / method, c, ref_model=ref)
        batch = _first_batch(tr)
        with torch.no_grad():
            return tr.compute_loss(tr.model, batch)

    plain = loss_of(base, 0.1)
    assert torch.equal(loss_of(rat, 0.0), plain)  # gamma = 0 is the base method exactly
    with_r = loss_of(rat, 0.5)
    backend = LocalModelBackend(model=model, tokenizer=tok)
    nll = []
    for p in pairs:
        conv = rationale_conversation(p)
        nll.append(-backend.loglikelihood(conv[:1], [conv[1]["content"]])[0])
    expected = 0.5 * sum(nll) / len(nll)
    assert float(with_r - plain) == pytest.approx(expected, rel=1e-4)
    assert expected > 1.0  # an untrained model: the rationale term is large


def test_bad_pairs_are_refused_before_anything_is_written(tiny_policy, pairs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from databazaar.alignment import PreferenceConfig, train_preference

    model, tok = tiny_policy
    same = [*pairs[:3], {**pairs[3], "rejected": pairs[3]["chosen"]}]
    with pytest.raises(InvalidInput, match=r"record 4.*identical"):
        train_preference(model, tok, same, tmp_path / "a", PreferenceConfig(steps=1))
    missing = [*pairs[:2], {k: v for k, v in pairs[2].items() if k != "chosen"}]
    with pytest.raises(InvalidInput, match=r"record 3: missing field.*chosen"):
        train_preference(model, tok, missing, tmp_path / "b", PreferenceConfig(steps=1))
    no_rat = [{k: v for k, v in p.items() if k != "rationale"} for p in pairs]
    with pytest.raises(InvalidInput, match=r"missing field.*rationale"):
        train_preference(model, tok, no_rat, tmp_path / "c", PreferenceConfig("rdpo", steps=1))
    with pytest.raises(InvalidInput, match="unknown method"):
        PreferenceConfig("ppo").validate()
    with pytest.raises(InvalidInput, match="gamma"):
        PreferenceConfig("rdpo", gamma=-1).validate()
    assert not any((tmp_path / d).exists() for d in "abc")


def test_rdpo_run_lowers_rationale_nll_and_saves(tiny_policy, pairs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from databazaar.alignment import PreferenceConfig, train_preference
    from databazaar.alignment.evaluate import implicit_reward_accuracy
    from databazaar.lm import load_model

    model, tok = tiny_policy
    start = copy.deepcopy(model)
    cfg = PreferenceConfig("rdpo", gamma=1.0, lr=5e-3, batch_size=8, steps=25, num_threads=1)
    _, res = train_preference(copy.deepcopy(model), tok, pairs, tmp_path / "out", cfg)
    assert res.steps == 25 and len(res.rationale_nll) == 25
    assert res.rationale_nll[-1] < 0.7 * res.rationale_nll[0]
    meta = json.loads((tmp_path / "out" / "preference.json").read_text())
    assert meta["config"]["method"] == "rdpo" and meta["result"]["steps"] == 25
    reloaded, _ = load_model(tmp_path / "out")
    acc = implicit_reward_accuracy(reloaded, start, tok, pairs)
    assert acc["reward_accuracy"] >= 0.75  # trained on these pairs: ranks them right
