"""Development runs of the zoo's SFT stage alone, on a kept base model, on DEV seeds only.

A zoo build spends about half its time on the base stage (drills and bridge), which
does not depend on the SFT settings. This script takes the base model of a kept build
(``lm_zoo_dev.py --keep DIR``), fine-tunes it with the default recipe's training
conversations under SFT settings given on the command line, and scores the assistant
on held-out ``arithmetic``, ``lookup``, ``unsafe`` and ``benign`` prompts drawn with dev
seeds (99 and 100 by default; report seeds of ``lm_zoo.py`` are refused). One base for
all variants also takes the base stage's run-to-run variation out of the comparison.
Every run is appended to ``benchmarks/results/lm_zoo_sft_dev.jsonl``. Example::

    python benchmarks/lm_zoo_sft_dev.py --name lr1e-3 --base DIR/<hash>/base \\
        --lr 1e-3 --steps 2000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from databazaar.lm.evaluate import evaluate_tasks
from databazaar.lm.model import load_model
from databazaar.lm.sft import SFTConfig, sft
from databazaar.lm.tasks import generate_tasks
from databazaar.lm.zoo import RECIPES, training_data

OUT = Path(__file__).resolve().parent / "results" / "lm_zoo_sft_dev.jsonl"
FAMILIES = ["arithmetic", "lookup", "unsafe", "benign"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--base", type=Path, required=True, help="base model folder of a build")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="default")
    ap.add_argument("--steps", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--lr", type=float, default=None, help="default: the recipe's")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--seed", type=int, default=0, help="SFT data order seed")
    ap.add_argument("--eval-seeds", type=int, nargs="+", default=[99, 100])
    ap.add_argument("--n-eval", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if min(a.eval_seeds) < 99:
        raise SystemExit("dev runs use seeds 99 or >= 100")
    cfg = RECIPES[a.recipe]()
    sets = {"max_steps": a.steps, "lr": a.lr, "batch_size": a.batch_size}
    sft_cfg = SFTConfig(
        **{
            **cfg.sft.to_dict(),
            **{k: v for k, v in sets.items() if v is not None},
            "random_state": a.seed,
            "num_threads": a.threads,
        }
    )
    _, conversations = training_data(cfg)
    model, tok = load_model(a.base)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lm-sft-dev-") as tmp:
        model, _ = sft(model, tok, conversations, tmp, config=sft_cfg)
    row = {
        "name": a.name,
        "base": str(a.base),
        "recipe": a.recipe,
        "sft": {k: getattr(sft_cfg, k) for k in ("max_steps", "lr", "batch_size")},
        "seed": a.seed,
        "sft_seconds": time.perf_counter() - t0,
        "threads": a.threads,
        "scores": {},
    }
    for es in a.eval_seeds:
        test = generate_tasks(FAMILIES, n_per_family=a.n_eval, split="test", random_state=es)
        s = evaluate_tasks(model, tok, test, num_threads=a.threads)
        row["scores"][str(es)] = {
            "arithmetic": s["exact_match"]["arithmetic"],
            "lookup": s["exact_match"]["lookup"],
            "refusal_rate_unsafe": s["refusal_rate_unsafe"],
            "answer_rate_benign": s["answer_rate_benign"],
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
