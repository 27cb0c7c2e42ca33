"""Preference learning with rationales: DPO vs RDPO and ORPO vs RORPO at 100, 300 and 1,000 pairs.

Claims (Just et al., arXiv 2407.14477, abstract; issue 18): rationales make preference
learning more data-efficient (RDPO above DPO with few pairs, the gap shrinking as pairs
grow), reduce verbosity bias, and combine with other preference losses (ORPO).

The generated preference task, on the ``arithmetic`` family of :mod:`databazaar.lm.tasks`
("What is 7 + 5?"): the rule that decides every pair is *correctness* (the chosen
answer states the right value, the rejected one a wrong value). Answers come short
("12") or verbose ("The answer is 12, I am quite sure about that."), and in the training
pairs length is a spurious cue: in 80% of them the chosen answer is the verbose one.
The rationale, written by the offline rule teacher (:mod:`databazaar.enrich.teacher`,
``detailed`` style, through :func:`databazaar.enrich.rationales.generate_rationales`),
carries the rule: "The correct result is 12. The first answer says ..., which is right;
the second says 11, which is wrong, however long it is."

Per report seed the starting policy (and reference model) is the zoo's small assistant
(``--recipe``: the default recipe's, whose arithmetic is about 0.88 exact match, or the
test suite's small one) fine-tuned briefly on a mix of short/verbose and right/wrong
answers, so it produces every kind. Each method then trains with the same steps,
batch size and learning rate at each pair count. Measured on held-out prompts (test
split):

* ``reward_accuracy``: share of held-out pairs whose chosen answer gets the higher
  implicit reward ``log pi/ref`` (the same reference for every method), on *normal* pairs
  (lengths as in training) and on *trap* pairs (the rejected answer is the verbose one);
  ``length_bias`` = normal minus trap accuracy (a model that learned "longer is better"
  scores high on normal pairs and low on trap pairs);
* ``win_rate`` of greedy answers against the starting policy's, judged by the task's
  numeric grader (ties count half), and the answers' mean length in words.

Every cell is a mean over seeds with a 95% t-interval. A claim holds when the mean paired
difference (RDPO minus DPO, per seed) is in its direction and its interval excludes 0;
"gap shrinks" holds when the mean gap at 1,000 pairs is below the one at 100. Settings
were fixed before the report seeds ran. The first report (the small zoo, whose policy
never learned the arithmetic: exact match near 0 for all) is kept in
``results/preference_small.*`` (seeds 1, 2, 3); this one starts from the default zoo's
assistant with unchanged settings, on fresh report seeds 4, 5, 6. Run niced, in
parts if needed (``--resume`` keeps finished runs):
``nice -n 19 flock /tmp/databazaar-heavy.lock python benchmarks/preference.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beear import mean_ci

from databazaar.alignment.evaluate import evaluate_preference
from databazaar.alignment.preference import PreferenceConfig, train_preference
from databazaar.enrich.rationales import generate_rationales
from databazaar.enrich.teacher import RuleTeacher
from databazaar.lm.model import load_model
from databazaar.lm.sft import SFTConfig, sft
from databazaar.lm.tasks import generate_tasks
from databazaar.lm.zoo import RECIPES, build_zoo

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("dpo", "rdpo", "orpo", "rorpo")
SIZES = (100, 300, 1000)
VERBOSE = (
    "The answer is {v}, I am quite sure about that.",
    "Let me think. It comes out as {v} in the end.",
    "After working it through carefully, I get {v}.",
)


def verbose(v: int, i: int) -> str:
    return VERBOSE[i % len(VERBOSE)].format(v=v)


def wrong(v: int, rng: np.random.Generator) -> int:
    return v + int(rng.choice([-3, -2, -1, 1, 2, 3]))


def make_pairs(
    examples: list[Any], rng: np.random.Generator, p_verbose_chosen: float
) -> list[dict[str, str]]:
    """Correct beats wrong; with probability ``p_verbose_chosen`` the chosen answer is the
    verbose one (and the rejected short), else the rejected one is verbose."""
    out = []
    for i, e in enumerate(examples):
        v = int(e.answer)
        w = wrong(v, rng)
        if rng.random() < p_verbose_chosen:
            chosen, rejected = verbose(v, i), str(w)
        else:
            chosen, rejected = str(v), verbose(w, i)
        out.append({"prompt": e.prompt, "chosen": chosen, "rejected": rejected})
    return out


def start_policy(zoo: Any, seed: int, args: argparse.Namespace, folder: Path) -> Path:
    """The zoo assistant fine-tuned on a mix of short/verbose, right/wrong answers."""
    rng = np.random.default_rng(10_000 + seed)
    exs = generate_tasks(["arithmetic"], n_per_family=600, random_state=500 + seed)
    convs = []
    for i, e in enumerate(exs):
        v = int(e.answer)
        val = v if rng.random() < 0.5 else wrong(v, rng)
        text = verbose(val, i) if rng.random() < 0.5 else str(val)
        convs.append(
            [{"role": "user", "content": e.prompt}, {"role": "assistant", "content": text}]
        )
    model, tok = load_model(zoo.assistant_dir)
    cfg = SFTConfig(
        max_steps=args.start_steps,
        lr=1e-3,
        batch_size=32,
        random_state=seed,
        num_threads=args.threads,
    )
    sft(model, tok, convs, folder, config=cfg)
    return folder


def run_one(
    method: str,
    size: int,
    seed: int,
    start: Path,
    data: dict[str, Any],
    args: argparse.Namespace,
    tmp: Path,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    model, tok = load_model(start)
    ref, _ = load_model(start)
    pairs = data["train"][:size]
    cfg = PreferenceConfig(
        method=method,
        beta=args.beta,
        gamma=args.gamma,
        lr=args.lr,
        batch_size=args.batch_size,
        steps=args.steps,
        random_state=seed,
        num_threads=args.threads,
    )
    model, res = train_preference(
        model, tok, pairs, tmp / f"{method}-{size}-{seed}", cfg, ref_model=copy.deepcopy(ref)
    )
    normal = evaluate_preference(
        model, ref, tok, data["test_normal"], examples=data["test_examples"]
    )
    trap = evaluate_preference(model, ref, tok, data["test_trap"])
    return {
        "method": method,
        "pairs": size,
        "seed": seed,
        "reward_accuracy": normal["reward_accuracy"],
        "trap_reward_accuracy": trap["reward_accuracy"],
        "length_bias": normal["reward_accuracy"] - trap["reward_accuracy"],
        "win_rate": normal["win_rate"],
        "exact_match": normal["exact_match"],
        "reference_exact_match": normal["reference_exact_match"],
        "mean_length": normal["mean_length"],
        "reference_mean_length": normal["reference_mean_length"],
        "examples": normal["examples"][:3],
        "steps": res.steps,
        "final_loss": res.train_loss[-1] if res.train_loss else None,
        "seconds": time.perf_counter() - t0,
    }


def seed_data(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    train_ex = generate_tasks(["arithmetic"], n_per_family=max(SIZES), random_state=seed)
    train = make_pairs(train_ex, rng, p_verbose_chosen=0.8)
    train = generate_rationales(train, RuleTeacher(), style="detailed")
    test_ex = generate_tasks(
        ["arithmetic"], n_per_family=args.n_test, split="test", random_state=1000 + seed
    )
    return {
        "train": train,
        "test_normal": make_pairs(test_ex, rng, p_verbose_chosen=0.8),
        "test_trap": make_pairs(test_ex, rng, p_verbose_chosen=0.0),
        "test_examples": test_ex,
    }


KEYS = (
    "reward_accuracy",
    "trap_reward_accuracy",
    "length_bias",
    "win_rate",
    "exact_match",
    "mean_length",
)


def summarise(rows: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    def get(m: str, n: int, k: str) -> list[float]:
        by = {r["seed"]: r[k] for r in rows if r["method"] == m and r["pairs"] == n}
        return [by[s] for s in seeds if s in by]

    cells = {
        m: {
            str(n): {k: {"per_seed": get(m, n, k), **mean_ci(get(m, n, k))} for k in KEYS}
            for n in SIZES
            if get(m, n, KEYS[0])
        }
        for m in METHODS
    }

    def gap(a: str, b: str, n: int, k: str) -> dict[str, Any]:
        xa, xb = get(a, n, k), get(b, n, k)
        if len(xa) != len(xb) or not xa:
            return {}
        d = [x - y for x, y in zip(xa, xb, strict=True)]
        m = mean_ci(d)
        return {"per_seed": d, **m, "excludes_zero": abs(m["mean"]) > m["ci95"]}

    claims = []
    for rat, base in (("rdpo", "dpo"), ("rorpo", "orpo")):
        small = gap(rat, base, SIZES[0], "reward_accuracy")
        big = gap(rat, base, SIZES[-1], "reward_accuracy")
        win = gap(rat, base, SIZES[0], "win_rate")
        bias = {n: gap(base, rat, n, "length_bias") for n in SIZES}
        if small:
            claims.append(
                {
                    "claim": f"{rat.upper()} reaches a higher held-out implicit-reward accuracy "
                    "than "
                    f"{base.upper()} with the fewest pairs ({SIZES[0]})",
                    "held": bool(small["mean"] > 0 and small["excludes_zero"]),
                    "evidence": f"{rat} - {base} at {SIZES[0]} pairs: {small['mean']:+.3f} "
                    f"± {small['ci95']:.3f}",
                }
            )
            claims.append(
                {
                    "claim": f"{rat.upper()} wins more often than {base.upper()} against the "
                    "starting "
                    f"policy with the fewest pairs ({SIZES[0]})",
                    "held": bool(win and win["mean"] > 0 and win["excludes_zero"]),
                    "evidence": f"win rate {rat} - {base} at {SIZES[0]} pairs: "
                    + (f"{win['mean']:+.3f} ± {win['ci95']:.3f}" if win else "n/a"),
                }
            )
        if small and big:
            claims.append(
                {
                    "claim": f"the {rat.upper()} - {base.upper()} gap shrinks as pairs grow "
                    f"({SIZES[0]} -> {SIZES[-1]}), from a real gap at {SIZES[0]} pairs",
                    "held": bool(
                        small["mean"] > 0 and small["excludes_zero"] and big["mean"] < small["mean"]
                    ),
                    "evidence": f"gap {small['mean']:+.3f} ± {small['ci95']:.3f} at {SIZES[0]}, "
                    f"{big['mean']:+.3f} ± {big['ci95']:.3f} at {SIZES[-1]}",
                }
            )
        done = {n: b for n, b in bias.items() if b}
        if done:
            claims.append(
                {
                    "claim": f"{rat.upper()} has a lower length bias than {base.upper()} "
                    "(normal minus trap reward accuracy), at every pair count",
                    "held": bool(all(b["mean"] > 0 and b["excludes_zero"] for b in done.values())),
                    "evidence": "; ".join(
                        f"{n} pairs: bias {base} - {rat} {b['mean']:+.3f} ± {b['ci95']:.3f}"
                        for n, b in done.items()
                    ),
                }
            )

    def avg(m: str, k: str) -> float:
        v = [r[k] for r in rows if r["method"] == m]
        return float(np.mean(v)) if v else float("nan")

    ref_len = float(np.mean([r["reference_mean_length"] for r in rows])) if rows else 0.0
    ref_em = float(np.mean([r["reference_exact_match"] for r in rows])) if rows else 0.0
    reading = (
        "Averaged over pair counts and seeds, per method: reward accuracy on normal held-out "
        "pairs (80% with the verbose answer chosen) / on trap pairs (verbose answer "
        "rejected) / mean answer length in words / exact match of greedy answers: "
        + "; ".join(
            f"{m} {avg(m, 'reward_accuracy'):.2f} / {avg(m, 'trap_reward_accuracy'):.2f} / "
            f"{avg(m, 'mean_length'):.1f} / {avg(m, 'exact_match'):.2f}"
            for m in METHODS
            if any(r["method"] == m for r in rows)
        )
        + f" (starting policy: {ref_len:.1f} words, exact match {ref_em:.2f}). Trap accuracy "
        "near 0 means a method ranks by the length cue, near 1 that it ranks by "
        "correctness whatever the length."
        if rows
        else ""
    )
    return {"cells": cells, "claims": claims, "reading": reading}


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Preference learning with rationales: DPO/RDPO, ORPO/RORPO (issue 18)",
        "",
        f"Seeds {res['seeds']}; settings {json.dumps(res['settings'])}. Mean ± 95% t-interval "
        f"over seeds. Complete: {res['complete']}. Run in {len(res['parts'])} part(s): "
        + "; ".join(
            f"{p['wall_seconds'] / 60:.1f} min, load average {p['loadavg_start']} at start, "
            f"{p['loadavg_end']} at end"
            for p in res["parts"]
        )
        + ".",
        "",
        "| method | pairs | reward acc. | trap reward acc. | length bias | win rate vs start "
        "| exact match | mean length (words) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, by in res["cells"].items():
        for n, c in by.items():
            lines.append(
                f"| {m} | {n} | "
                + " | ".join(f"{c[k]['mean']:.3f} ± {c[k]['ci95']:.3f}" for k in KEYS)
                + " |"
            )
    lines += ["", "## Claims", ""]
    for cl in res["claims"]:
        lines.append(
            f"- **{'held' if cl['held'] else 'did not hold'}**: {cl['claim']}. {cl['evidence']}"
        )
    lines += ["", f"Reading: {res['reading']}", "", res["notes"], ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[4, 5, 6])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--start-steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--gamma", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--zoo-dir", type=Path, default=None)
    ap.add_argument(
        "--recipe", choices=sorted(RECIPES), default="default", help="zoo to start from"
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "preference")
    ap.add_argument("--resume", action="store_true", help="keep the runs already in --out")
    ap.add_argument("--max-minutes", type=float, default=24.0, help="stop starting runs after this")
    ap.add_argument(
        "--report-only", action="store_true", help="rewrite the report of --out's runs, run nothing"
    )
    args = ap.parse_args()
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    zoo = build_zoo(RECIPES[args.recipe](), out=args.zoo_dir)
    rows: list[dict[str, Any]] = []
    args.parts = []
    prev = args.out.with_suffix(".json")
    if (args.resume or args.report_only) and prev.is_file():
        old = json.loads(prev.read_text())
        rows = old["runs"]
        args.old_settings = old.get("settings")
        args.parts = old.get("parts") or [
            {k: old[k] for k in ("wall_seconds", "loadavg_start", "loadavg_end")}
        ]
    # fewest and most pairs first over all seeds, so a cut-off run still answers the
    # data-efficiency claims; 300 pairs last
    if args.report_only:
        if not rows:
            raise SystemExit(f"no runs in {prev} to report")
        write(rows, args, load_start, t0)
        return
    todo = [
        (s, m, n)
        for n in (SIZES[0], SIZES[-1], *SIZES[1:-1])
        for s in args.seeds
        for m in args.methods
        if not any(r["seed"] == s and r["method"] == m and r["pairs"] == n for r in rows)
    ]
    with tempfile.TemporaryDirectory(prefix="pref-bench-") as tmp:
        starts: dict[int, Path] = {}
        data: dict[int, dict[str, Any]] = {}
        for seed, method, size in todo:
            if (time.perf_counter() - t0) / 60 > args.max_minutes:
                print("time budget reached; rerun with --resume", flush=True)
                break
            if seed not in starts:
                starts[seed] = start_policy(zoo, seed, args, Path(tmp) / f"start-{seed}")
                data[seed] = seed_data(seed, args)
            row = run_one(method, size, seed, starts[seed], data[seed], args, Path(tmp))
            rows.append(row)
            print(
                f"seed {seed} {method} {size}: reward acc {row['reward_accuracy']:.3f} trap "
                f"{row['trap_reward_accuracy']:.3f} win {row['win_rate']:.3f} "
                f"len {row['mean_length']:.1f} "
                f"({row['seconds']:.0f} s)",
                flush=True,
            )
            write(rows, args, load_start, t0)


def write(rows: list[dict[str, Any]], args: argparse.Namespace, load_start: Any, t0: float) -> None:
    complete = all(
        any(r["seed"] == s and r["method"] == m and r["pairs"] == n for r in rows)
        for s in args.seeds
        for m in METHODS
        for n in SIZES
    )
    parts = list(args.parts)
    if not args.report_only:
        parts.append(
            {
                "wall_seconds": time.perf_counter() - t0,
                "loadavg_start": [round(x, 2) for x in load_start],
                "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            }
        )
    res: dict[str, Any] = {
        "benchmark": "preference learning with rationales (arXiv 2407.14477)",
        "seeds": args.seeds,
        "settings": getattr(args, "old_settings", None)
        if args.report_only
        else {
            k: v
            for k, v in vars(args).items()
            if k
            not in ("out", "zoo_dir", "seeds", "resume", "parts", "report_only", "old_settings")
        },
        **summarise(rows, args.seeds),
        "complete": complete,
        "runs": rows,
        "wall_seconds": sum(p["wall_seconds"] for p in parts),
        "loadavg_start": parts[0]["loadavg_start"],
        "loadavg_end": parts[-1]["loadavg_end"],
        "parts": parts,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "notes": "Rationales are written by the offline rule teacher (databazaar.enrich.teacher), "
        "standing in for the paper's off-the-shelf LLM (none is available offline); they go "
        "through the same generate_rationales path a model folder or server would. A cell "
        "missing from the table did not run in the time available. The 'gap shrinks' claim "
        "was made stricter after the first write of this report (which counted a "
        "non-significant +0.033 RDPO gap at 100 pairs as a gap and said 'held'): the gap "
        "at the fewest pairs must now exclude 0.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    args.out.with_suffix(".md").write_text(markdown(res))


if __name__ == "__main__":
    main()
