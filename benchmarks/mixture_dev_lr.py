"""Dev-seed check for ``benchmarks/mixture.py``: uniform weights at the target, three lrs.

Seeds 100 and 101 (dev seeds, never reported); the full run's setting otherwise (target
393,216 tokens, 2 epochs, 2 x 128 GPT-2, vocab 512, blocks of 64, batches of 16).
Writes ``benchmarks/results/mixture_dev_lr.json`` (final average validation loss and
curve per lr and seed). Run: ``nice -n 10 python benchmarks/mixture_dev_lr.py``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from joblib import Parallel, delayed

from databazaar.lm.corpus import builtin_corpus
from databazaar.lm.model import ModelConfig
from databazaar.lm.train import TrainConfig
from databazaar.mixture import ProxyConfig, prepare_data, train_with_weights, uniform_weights

TARGET = 393_216
LRS = (1e-3, 2e-3, 4e-3)
DEV_SEEDS = (100, 101)


def main() -> None:
    corpus = builtin_corpus(max_docs_per_domain=600, seed=0)
    _, data = prepare_data(corpus, vocab_size=512, block_size=64)
    data = data.limit_val(64)

    def run(lr: float, seed: int) -> dict[str, object]:
        proxy = ProxyConfig(
            model=ModelConfig(n_layer=2, n_embd=128, n_head=4, n_positions=64),
            train=TrainConfig(batch_size=16, lr=lr, epochs=2),
            eval_blocks=64,
            num_threads=1,
        )
        t, c = time.perf_counter(), time.process_time()
        _, res = train_with_weights(
            data,
            uniform_weights(data.domains),
            budget=TARGET,
            proxy=proxy,
            seed=seed,
            data_seed=0,
            eval_every=96,
        )
        assert res.final is not None
        return {
            "lr": lr,
            "seed": seed,
            "final": res.final.average,
            "curve": [h.average for h in res.history],
            "wall": time.perf_counter() - t,
            "cpu": time.process_time() - c,
            "steps": res.steps,
            "load": os.getloadavg(),
        }

    out = Parallel(n_jobs=2, backend="loky")(delayed(run)(lr, s) for lr in LRS for s in DEV_SEEDS)
    for r in out:
        print(r["lr"], r["seed"], round(float(r["final"]), 4), r["steps"])  # type: ignore[arg-type]
    path = Path(__file__).parent / "results" / "mixture_dev_lr.json"
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
