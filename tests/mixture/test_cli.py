"""The ``mixture`` Typer sub-app: optimize writes weights and a report, train uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from databazaar.core.errors import InvalidInput, NotFound
from databazaar.lm import build_corpus, load_model
from databazaar.mixture.cli import mixture_app

SMALL = [
    "--vocab-size",
    "300",
    "--block-size",
    "16",
    "--n-layer",
    "1",
    "--n-embd",
    "16",
    "--n-head",
    "2",
    "--batch-size",
    "8",
    "--quiet",
]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory, corpus_texts) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("corpus")
    build_corpus(corpus_texts, val_fraction=0.2, seed=0).save(folder)
    return folder


def test_optimize_ddo_then_train(corpus_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "w.json"
    res = runner.invoke(
        mixture_app,
        ["optimize", str(corpus_dir), "--budget", "768", "--method", "ddo", "-o", str(out), *SMALL],
    )
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert saved["method"] == "ddo" and saved["budget"] == 768
    assert sum(saved["weights"].values()) == pytest.approx(1.0)
    assert set(saved["weights"]) == {"boiler", "code", "prose"}
    assert len(saved["runs"]) == 7
    report = out.with_suffix(".md").read_text()
    assert "# Mixture weights: ddo" in report and "w.svg" in report
    assert out.with_suffix(".svg").is_file()
    assert "wrote" in res.output

    model_dir = tmp_path / "model"
    res = runner.invoke(
        mixture_app,
        [
            "train",
            str(corpus_dir),
            "--budget",
            "768",
            "--weights",
            str(out),
            "-o",
            str(model_dir),
            "--eval-every",
            "3",
            "--checkpoint-every",
            "3",
            *SMALL,
        ],
    )
    assert res.exit_code == 0, res.output
    hist = json.loads((model_dir / "history.json").read_text())
    assert hist["weights"] == pytest.approx(saved["weights"])
    assert [h["step"] for h in hist["history"]] == [3, 6]
    assert (model_dir / "checkpoints" / "checkpoint-3").is_dir()
    model, tok = load_model(model_dir)
    assert tok is not None and model.config.n_layer == 1
    assert "average" in res.output


def test_optimize_uniform_and_train_default_weights(corpus_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "u.json"
    res = runner.invoke(
        mixture_app,
        ["optimize", str(corpus_dir), "-b", "768", "-m", "uniform", "-o", str(out), *SMALL],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["weights"] == pytest.approx(
        {"boiler": 1 / 3, "code": 1 / 3, "prose": 1 / 3}
    )
    res = runner.invoke(
        mixture_app,
        ["train", str(corpus_dir), "-b", "384", "-o", str(tmp_path / "m"), "--epochs", "2", *SMALL],
    )
    assert res.exit_code == 0, res.output
    assert "trained 6 steps" in res.output  # 24 blocks / batch 8 = 3 steps per epoch


def test_cli_errors(corpus_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(mixture_app, ["optimize", str(corpus_dir), "-b", "768", "-m", "magic"])
    assert isinstance(res.exception, InvalidInput) and "unknown method" in str(res.exception)
    res = runner.invoke(mixture_app, ["optimize", str(tmp_path / "nope"), "-b", "768"])
    assert isinstance(res.exception, NotFound)
    res = runner.invoke(
        mixture_app,
        ["optimize", str(corpus_dir), "-b", "768", "-m", "autoscale", "--budgets", "1,2,3", *SMALL],
    )
    assert isinstance(res.exception, InvalidInput) and "--budgets" in str(res.exception)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"weights": {"code": 1.0}}))
    res = runner.invoke(
        mixture_app, ["train", str(corpus_dir), "-b", "384", "-w", str(bad), *SMALL]
    )
    assert isinstance(res.exception, InvalidInput) and "missing" in str(res.exception)
    res = runner.invoke(mixture_app, ["--help"])
    assert res.exit_code == 0 and "optimize" in res.output and "train" in res.output
