"""The MLAN benchmark (benchmarks/language_only.py) end to end at a reduced size: every
arm runs, the result files hold ``arms``, ``seeds`` and ``claims`` as the issue asks,
and the token accounting of the arms is exact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_reduced_benchmark_writes_arms_seeds_and_claims(tmp_path: Path) -> None:
    out = tmp_path / "language_only"
    args = [
        "--seeds",
        "0",
        "1",
        "--budget",
        "32",
        "--epochs",
        "1",
        "--base-steps",
        "20",
        "--docs-per-family",
        "30",
        "--n-captions",
        "64",
        "--n-text",
        "12",
        "--n-vision",
        "24",
        "--n-eval",
        "4",
        "--batch-size",
        "16",
        "--out",
        str(out),
    ]
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "language_only.py"), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO / "src"),
            "OMP_NUM_THREADS": "1",
            "HOME": str(tmp_path),
        },
    )
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["seeds"] == [0, 1]
    assert list(data["arms"]) == ["none", "text_only", "mix_88_12", "mix_50_50"]
    for arm in data["arms"].values():
        for key in ("language", "vision", "language_ci95", "vision_ci95", "training_tokens"):
            assert isinstance(arm[key], float)
        assert 0.0 <= arm["language"] <= 1.0 and 0.0 <= arm["vision"] <= 1.0
    arms = data["arms"]
    assert arms["none"]["training_tokens"] == 0
    # 32 examples, one epoch: each example seen once; 16 image tokens per vision example
    assert arms["text_only"]["image_tokens"] == 0 and arms["text_only"]["text_tokens"] > 0
    assert arms["mix_88_12"]["image_tokens"] == 4 * 16
    assert arms["mix_50_50"]["image_tokens"] == 16 * 16
    assert len(data["claims"]) >= 4
    for claim in data["claims"]:
        assert set(claim) == {"claim", "held", "evidence"} and isinstance(claim["held"], bool)
    assert any("beats no tuning on held-out vision" in c["claim"] for c in data["claims"])
    md = out.with_suffix(".md").read_text()
    assert "## Claims" in md and "| mix_50_50 |" in md
    assert out.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
