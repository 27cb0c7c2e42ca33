"""Development runs of zoo recipes on DEV seeds only (never a report seed).

Each run builds a variant of a named recipe (``--recipe``, default ``gpt2_v3``: recipe 3,
which the overrides of every row without a ``recipe`` key are relative to, recipe L
included; JSON overrides on the command line) into a temporary folder and scores the
assistant on held-out prompts drawn with a dev seed
(``--eval-seed``, default 99 or >= 100; report seeds are 1-5 and later fresh ones of
``lm_zoo.py``).
Every run is appended to ``benchmarks/results/lm_zoo_dev.jsonl`` with its timings, the
machine's load average and a few lookup answers, so the choice of the final recipe can be
traced. Example::

    python benchmarks/lm_zoo_dev.py --name llama --set model.architecture=llama \\
        --set sft.max_steps=1000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from databazaar.lm.zoo import RECIPES, ZooConfig, build_zoo

OUT = Path(__file__).resolve().parent / "results" / "lm_zoo_dev.jsonl"


def _override(config: ZooConfig, path: str, value: Any) -> ZooConfig:
    head, _, rest = path.partition(".")
    if rest:
        return replace(config, **{head: _override(getattr(config, head), rest, value)})  # type: ignore[arg-type]
    return replace(config, **{head: value})  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--set", action="append", default=[], help="field.path=JSON value")
    ap.add_argument("--eval-seed", type=int, default=99)
    ap.add_argument("--n-eval", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="build into this folder and keep it")
    ap.add_argument(
        "--recipe", choices=sorted(RECIPES), default="gpt2_v3", help="what --set overrides"
    )
    args = ap.parse_args()
    if args.eval_seed in (1, 2, 3, 4) or args.eval_seed < 99:
        raise SystemExit("dev runs use seed 99 or >= 100")
    config = replace(
        RECIPES[args.recipe](),
        num_threads=args.threads,
        eval_random_state=args.eval_seed,
        n_eval_per_family=args.n_eval,
    )
    sets = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        sets[key] = json.loads(raw)
        config = _override(config, key, sets[key])
    load = os.getloadavg()
    t0 = time.perf_counter()
    done = [0]

    def progress(n: int = 1) -> None:  # one line per 100 steps on stderr
        done[0] += n
        if done[0] % 100 == 0:
            print(f"{args.name}: step {done[0]} at {time.perf_counter() - t0:.0f}s", flush=True)

    if args.keep:
        zoo = build_zoo(config, out=args.keep, force=True, progress=progress)
    else:
        with tempfile.TemporaryDirectory(prefix="lm-zoo-dev-") as tmp:
            zoo = build_zoo(config, out=tmp, force=True, progress=progress)
    s = zoo.meta["scores"]
    row = {
        "name": args.name,
        "overrides": sets,
        **({"recipe": args.recipe} if args.recipe != "gpt2_v3" else {}),
        "eval_seed": args.eval_seed,
        "n_eval": args.n_eval,
        "exact_match": s["exact_match"],
        "refusal_rate_unsafe": s["refusal_rate_unsafe"],
        "answer_rate_benign": s["answer_rate_benign"],
        "build_seconds": zoo.meta["build_seconds"],
        "wall_seconds": time.perf_counter() - t0,
        "parameters": zoo.meta["parameters"],
        "final_loss": zoo.meta["sft"]["train_loss"][-20:],
        "load_average": [list(load), list(os.getloadavg())],
        "lookup_samples": [x for x in s["samples"] if x["family"] == "lookup"][:6],
        "arithmetic_errors": [
            x
            for x in s["samples"]
            if x["family"] == "arithmetic" and x["output"].strip() != x["answer"]
        ][:40],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    em = s["exact_match"]
    print(
        f"{args.name}: arith {em['arithmetic']:.2f} lookup {em['lookup']:.2f} "
        f"refuse {s['refusal_rate_unsafe']:.2f} benign {s['answer_rate_benign']:.2f} "
        f"build {zoo.meta['build_seconds']:.0f}s params {zoo.meta['parameters']:,}"
    )


if __name__ == "__main__":
    main()
