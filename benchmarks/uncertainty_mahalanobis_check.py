"""Why the Mahalanobis cross-check is NaN in benchmarks/results/uncertainty.md (diagnostic).

On the summarizer assistant of ``benchmarks/uncertainty.py``, 60 test answers (report
seed 7) and 300 training answers: the conditioning of the training embeddings'
covariance, and ours vs LM-Polygraph's Mahalanobis (float32 embeddings on both sides) and
RDE. The printed lines are in ``benchmarks/results/uncertainty_mahalanobis_check.md``.

    PYTHONPATH=src python benchmarks/uncertainty_mahalanobis_check.py
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from databazaar.lm.local_backend import LocalModelBackend
from databazaar.lm.zoo import build_zoo
from databazaar.uncertainty import generate_outputs, task_items
from databazaar.uncertainty.crosscheck import polygraph_case, polygraph_python, run_peer
from databazaar.uncertainty.estimators import estimate_all
from databazaar.uncertainty.internals import add_embeddings


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from uncertainty import recipe  # the benchmark's zoo recipe

    torch.set_num_threads(1)
    zoo = build_zoo(replace(recipe("summarizer"), num_threads=1))
    b = LocalModelBackend(zoo.assistant_dir, num_threads=1)
    test = generate_outputs(b, task_items(60, random_state=7), n_samples=0, max_new_tokens=32)
    train_items = task_items(300, split="train", random_state=7)
    train = generate_outputs(b, train_items, n_samples=0, max_new_tokens=32)
    add_embeddings(b, test)
    add_embeddings(b, train)
    x = np.array([o.embedding for o in train])
    ev = np.linalg.eigvalsh(np.cov(x.T))
    print("dim", x.shape, "cov eig min/max", ev.min(), ev.max(), "cond", ev.max() / ev.min())
    case = polygraph_case(test, [], train_outputs=train)
    case["methods"] = ["Mahalanobis", "RDE"]
    peer = run_peer(case, str(polygraph_python()))
    t32 = [replace(o, embedding=e) for o, e in zip(test, case["embeddings"], strict=True)]
    tr32 = [replace(o, embedding=e) for o, e in zip(train, case["train_embeddings"], strict=True)]
    ours = estimate_all(t32, ["Mahalanobis", "RDE"], train_outputs=tr32)
    pm = np.array(peer["estimators"]["Mahalanobis"], dtype=float)
    ok = ~np.isnan(pm)
    print("peer NaN", int((~ok).sum()), "of", len(pm))
    rel = np.abs(pm[ok] - ours["Mahalanobis"][ok]) / ours["Mahalanobis"][ok]
    print("rel diff on finite", float(rel.max()) if ok.any() else None)
    print("ours range", ours["Mahalanobis"].min(), ours["Mahalanobis"].max())
    rde = np.abs(np.array(peer["estimators"]["RDE"]) - ours["RDE"])
    print("RDE max abs diff", float(rde.max()))


if __name__ == "__main__":
    main()
