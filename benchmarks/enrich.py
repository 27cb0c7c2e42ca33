"""DiPT on the task suite: SFT on answer-only vs single-rationale vs DiPT-enriched data, and
DiPT prompting at inference vs plain and chain-of-thought prompting.

Claims (Just et al., arXiv 2409.06241, abstract; issue 18): fine-tuning on data enriched
with diverse perspectives beats fine-tuning on the raw data, and DiPT makes reasoning
more stable on paraphrased problems; at inference, DiPT prompting improves on the
single-path method it wraps. Checked here on the ``multiple_choice`` family of
:mod:`databazaar.lm.tasks` ("Which one is a fruit? A) saw B) plum ... Answer with the
letter."), starting from the base model of a zoo build (``--recipe``: the default
recipe's 2 x 128 Llama, or the test suite's small GPT-2; built once and cached):

* three SFT data sets over the *same* training questions and the same number of
  optimizer steps: ``answer`` (the letter), ``single`` (one rationale, about the correct
  option only: "plum is a fruit.\\nAnswer: B"), ``dipt`` (:func:`databazaar.enrich.dipt.enrich_sft`
  with the offline rule teacher of :mod:`databazaar.enrich.teacher` as the rationale
  writer: every option's perspective, then the answer);
* accuracy of greedy answers (:func:`~databazaar.enrich.dipt.extract_answer`) on held-out
  questions (test split) and on their paraphrases (:func:`databazaar.lm.tasks.paraphrase`);
  the paraphrase drop is the difference;
* inference: the zoo's small assistant as a local backend
  (:class:`~databazaar.lm.local_backend.LocalModelBackend`) answers the held-out questions
  under :class:`~databazaar.enrich.dipt.PerspectivePrompting` modes ``plain``, ``cot``
  and ``dipt`` (one prompt per option perspective, majority vote).

Every cell is a mean over the report seeds with a 95% t-interval; a claim holds when the
mean paired difference is in its direction and the interval of the paired differences
excludes zero. Settings were fixed before the report seeds ran (no tuning on them). The
first report (the small zoo, SFT at 3e-3, seeds 1, 2, 3) is kept in
``results/enrich_small.*``: every condition sat at chance there. This one starts from the
default zoo's Llama base, SFT at 1e-3 (the rate the zoo's own SFT stage was given on dev
seeds), on fresh report seeds 4, 5, 6. Run niced:
``nice -n 19 flock /tmp/databazaar-heavy.lock python benchmarks/enrich.py``.
"""

from __future__ import annotations

import argparse
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

from databazaar.enrich.dipt import PerspectivePrompting, enrich_sft, extract_answer, parse_options
from databazaar.enrich.teacher import RuleTeacher, kind_of
from databazaar.lm.evaluate import answer_prompts
from databazaar.lm.local_backend import LocalModelBackend
from databazaar.lm.model import load_model
from databazaar.lm.sft import SFTConfig, sft
from databazaar.lm.tasks import generate_tasks, paraphrase
from databazaar.lm.zoo import RECIPES, build_zoo

RESULTS = Path(__file__).resolve().parent / "results"
CONDITIONS = ("answer", "single", "dipt")
MODES = ("plain", "cot", "dipt")


def single_rationale(prompt: str, letter: str) -> str:
    """One reasoning path: why the correct option is right (no other perspective)."""
    word = parse_options(prompt)[letter]
    return f"{word} is a {kind_of(word)}.\nAnswer: {letter}"


def training_sets(seed: int, n_train: int) -> dict[str, list[list[dict[str, str]]]]:
    """The three SFT sets over the same questions (chat conversations)."""
    train = generate_tasks(["multiple_choice"], n_per_family=n_train, random_state=seed)
    recs = [{"prompt": e.prompt, "completion": e.answer} for e in train]
    dipt = enrich_sft(recs, RuleTeacher())
    targets = {
        "answer": [e.answer for e in train],
        "single": [single_rationale(e.prompt, e.answer) for e in train],
        "dipt": [r["completion"] for r in dipt],
    }
    return {
        c: [
            [{"role": "user", "content": e.prompt}, {"role": "assistant", "content": t}]
            for e, t in zip(train, ts, strict=True)
        ]
        for c, ts in targets.items()
    }


def accuracy(model: Any, tok: Any, examples: list[Any], max_new_tokens: int) -> float:
    outs = answer_prompts(
        model, tok, [e.prompt for e in examples], max_new_tokens=max_new_tokens, batch_size=32
    )
    right = [
        extract_answer(o, parse_options(e.prompt)) == e.answer
        for e, o in zip(examples, outs, strict=True)
    ]
    return float(np.mean(right))


def run_seed(seed: int, zoo: Any, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    test = generate_tasks(
        ["multiple_choice"], n_per_family=args.n_test, split="test", random_state=1000 + seed
    )
    para = [paraphrase(e, random_state=seed) for e in test]
    sets = training_sets(seed, args.n_train)
    row: dict[str, Any] = {"seed": seed, "sft": {}, "inference": {}}
    for cond in CONDITIONS:
        model, tok = load_model(zoo.base_dir)
        cfg = SFTConfig(
            max_steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            random_state=seed,
            num_threads=args.threads,
        )
        model, res = sft(model, tok, sets[cond], tmp / f"{seed}-{cond}", config=cfg)
        acc = accuracy(model, tok, test, args.max_new_tokens)
        acc_p = accuracy(model, tok, para, args.max_new_tokens)
        row["sft"][cond] = {
            "accuracy": acc,
            "paraphrase_accuracy": acc_p,
            "paraphrase_drop": acc - acc_p,
            "final_train_loss": res.train_loss[-1],
            "trainable_tokens": res.n_trainable_tokens,
        }
        print(f"seed {seed} {cond}: acc {acc:.3f} paraphrased {acc_p:.3f}", flush=True)
    model, tok = load_model(zoo.assistant_dir)
    backend = LocalModelBackend(model=model, tokenizer=tok, num_threads=args.threads)
    questions = [e.prompt for e in test[: args.n_inference]]
    for mode in MODES:
        answers = PerspectivePrompting(backend, mode=mode, max_new_tokens=32).answer(questions)
        acc = float(np.mean([a.answer == e.answer for a, e in zip(answers, test, strict=False)]))
        row["inference"][mode] = {"accuracy": acc, "example": answers[0].outputs[:2]}
        print(f"seed {seed} inference {mode}: acc {acc:.3f}", flush=True)
    row["seconds"] = time.perf_counter() - t0
    return row


def paired(rows: list[dict[str, Any]], get_a, get_b) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    diffs = [get_a(r) - get_b(r) for r in rows]
    m = mean_ci(diffs)
    return {"per_seed": diffs, **m, "excludes_zero": abs(m["mean"]) > m["ci95"]}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    cells: dict[str, Any] = {"sft": {}, "inference": {}}
    for cond in CONDITIONS:
        cells["sft"][cond] = {
            k: {
                "per_seed": [r["sft"][cond][k] for r in rows],
                **mean_ci([r["sft"][cond][k] for r in rows]),
            }
            for k in ("accuracy", "paraphrase_accuracy", "paraphrase_drop")
        }
    for mode in MODES:
        vals = [r["inference"][mode]["accuracy"] for r in rows]
        cells["inference"][mode] = {"accuracy": {"per_seed": vals, **mean_ci(vals)}}
    sft_acc = paired(
        rows, lambda r: r["sft"]["dipt"]["accuracy"], lambda r: r["sft"]["answer"]["accuracy"]
    )
    drop = paired(
        rows,
        lambda r: r["sft"]["answer"]["paraphrase_drop"],
        lambda r: r["sft"]["dipt"]["paraphrase_drop"],
    )
    vs_single = paired(
        rows, lambda r: r["sft"]["dipt"]["accuracy"], lambda r: r["sft"]["single"]["accuracy"]
    )
    inf_plain = paired(
        rows,
        lambda r: r["inference"]["dipt"]["accuracy"],
        lambda r: r["inference"]["plain"]["accuracy"],
    )
    inf_cot = paired(
        rows,
        lambda r: r["inference"]["dipt"]["accuracy"],
        lambda r: r["inference"]["cot"]["accuracy"],
    )

    def held(d: dict[str, Any]) -> bool:
        return bool(d["mean"] > 0 and d["excludes_zero"])

    claims = [
        {
            "claim": "SFT on DiPT-enriched data reaches a higher held-out accuracy than SFT on "
            "answer-only data (same questions, same steps)",
            "held": held(sft_acc),
            "evidence": f"accuracy dipt - answer: {sft_acc['mean']:+.3f} ± {sft_acc['ci95']:.3f} "
            f"(per seed {[round(x, 3) for x in sft_acc['per_seed']]})",
        },
        {
            "claim": "DiPT-enriched SFT has a smaller accuracy drop on paraphrased questions "
            "than answer-only SFT",
            "held": held(drop),
            "evidence": f"drop answer - drop dipt: {drop['mean']:+.3f} ± {drop['ci95']:.3f} "
            f"(per seed {[round(x, 3) for x in drop['per_seed']]})",
        },
        {
            "claim": "DiPT-enriched SFT beats single-rationale SFT (perspectives add to one "
            "reasoning path)",
            "held": held(vs_single),
            "evidence": f"accuracy dipt - single: {vs_single['mean']:+.3f} "
            f"± {vs_single['ci95']:.3f}",
        },
        {
            "claim": "DiPT prompting at inference beats plain prompting (local backend: the "
            "zoo's assistant)",
            "held": held(inf_plain),
            "evidence": f"accuracy dipt - plain: {inf_plain['mean']:+.3f} "
            f"± {inf_plain['ci95']:.3f}",
        },
        {
            "claim": "DiPT prompting at inference beats chain-of-thought prompting (same backend)",
            "held": held(inf_cot),
            "evidence": f"accuracy dipt - cot: {inf_cot['mean']:+.3f} ± {inf_cot['ci95']:.3f}",
        },
    ]
    chance = 0.25  # four options
    at_chance = {
        c: sum(abs(r["sft"][c]["accuracy"] - chance) <= 0.1 for r in rows) for c in CONDITIONS
    }
    para = {c: cells["sft"][c]["paraphrase_accuracy"]["mean"] for c in CONDITIONS}
    reading = (
        "Seeds whose held-out accuracy is within 0.10 of chance (0.25): "
        + ", ".join(f"{c} {at_chance[c]} of {len(rows)}" for c in CONDITIONS)
        + ". A paraphrase drop is only comparable between models that learned the task: "
        "a model at chance has nothing to lose. Accuracy on the paraphrased questions "
        "themselves: " + ", ".join(f"{c} {para[c]:.3f}" for c in CONDITIONS) + "."
    )
    return {
        "cells": cells,
        "reading": reading,
        "paired": {
            "dipt_minus_answer_accuracy": sft_acc,
            "answer_minus_dipt_drop": drop,
            "dipt_minus_single_accuracy": vs_single,
            "inference_dipt_minus_plain": inf_plain,
            "inference_dipt_minus_cot": inf_cot,
        },
        "claims": claims,
    }


def markdown(res: dict[str, Any]) -> str:
    c = res["cells"]

    def f(x: dict[str, Any]) -> str:
        return f"{x['mean']:.3f} ± {x['ci95']:.3f}"

    lines = [
        "# DiPT: perspective-enriched SFT and perspective prompting (issue 18)",
        "",
        f"Seeds {res['seeds']}; zoo recipe `{res['settings'].get('recipe', 'small')}` "
        f"({res['zoo']['parameters']:,} parameters); "
        f"{res['settings']['n_train']} training questions, {res['settings']['steps']} SFT steps, "
        f"{res['settings']['n_test']} held-out questions. Mean ± 95% t-interval over seeds. "
        f"Wall {res['wall_seconds'] / 60:.1f} min, load average at start {res['loadavg_start']}, "
        f"complete: {res['complete']}, "
        f"at end {res['loadavg_end']}.",
        "",
        "| SFT data | accuracy | paraphrased | paraphrase drop |",
        "|---|---|---|---|",
    ]
    for cond in CONDITIONS:
        x = c["sft"][cond]
        lines.append(
            f"| {cond} | {f(x['accuracy'])} | {f(x['paraphrase_accuracy'])} "
            f"| {f(x['paraphrase_drop'])} |"
        )
    lines += ["", "| inference prompting (zoo assistant) | accuracy |", "|---|---|"]
    for mode in MODES:
        lines.append(f"| {mode} | {f(c['inference'][mode]['accuracy'])} |")
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
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--n-inference", type=int, default=40)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--zoo-dir", type=Path, default=None)
    ap.add_argument(
        "--recipe", choices=sorted(RECIPES), default="default", help="zoo to start from"
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "enrich")
    ap.add_argument("--resume", action="store_true", help="keep the seeds already in --out")
    ap.add_argument("--max-minutes", type=float, default=22.0, help="start no seed after this")
    args = ap.parse_args()
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    zoo = build_zoo(RECIPES[args.recipe](), out=args.zoo_dir)
    rows: list[dict[str, Any]] = []
    prior = 0.0
    n_before = 0
    prev = args.out.with_suffix(".json")
    if args.resume and prev.is_file():
        old = json.loads(prev.read_text())
        rows, prior = old["runs"], old["wall_seconds"]
        args.prior_load = (old.get("loadavg_start"), old.get("loadavg_end"))
    n_before = len(rows)
    with tempfile.TemporaryDirectory(prefix="enrich-bench-") as tmp:
        for seed in args.seeds:
            if any(r["seed"] == seed for r in rows):
                continue
            if (time.perf_counter() - t0) / 60 > args.max_minutes:
                print("time budget reached; rerun with --resume", flush=True)
                break
            rows.append(run_seed(seed, zoo, args, Path(tmp)))
            write(rows, zoo, args, load_start, t0, prior)
    if rows and len(rows) == n_before:  # nothing ran: rewrite the report, keep its timings
        write(rows, zoo, args, load_start, t0, prior, rerun=False)


def write(
    rows: list[dict[str, Any]],
    zoo: Any,
    args: argparse.Namespace,
    load_start: Any,
    t0: float,
    prior: float,
    *,
    rerun: bool = True,
) -> None:
    """Write json and md for the seeds done so far (``complete`` says whether all ran);
    ``rerun=False`` rewrites the report of earlier runs with their wall time and loads."""
    first, last = getattr(args, "prior_load", (None, None))
    done = [r["seed"] for r in rows]
    res: dict[str, Any] = {
        "benchmark": "DiPT enrichment and prompting (arXiv 2409.06241)",
        "seeds": done,
        "complete": all(s in done for s in args.seeds),
        "zoo": {"hash": zoo.meta["hash"], "parameters": zoo.meta["parameters"]},
        "settings": {
            k: v
            for k, v in vars(args).items()
            if k not in ("out", "zoo_dir", "seeds", "resume", "max_minutes", "prior_load")
        },
        **summarise(rows),
        "runs": rows,
        "wall_seconds": prior + (time.perf_counter() - t0 if rerun else 0.0),
        "loadavg_start": first or [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()] if rerun else last,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "notes": "The rationales are written by the offline rule teacher "
        "(databazaar.enrich.teacher), standing in for the off-the-shelf LLM of the paper, "
        "which is not available offline; the enrichment code path (enrich_sft through the "
        "backend interface) is the one a real model folder or server uses. Inference-time "
        "DiPT needs a model that follows new instructions; the tiny zoo assistant was never "
        "trained on such instructions, so that comparison tests the prompting wrapper on a "
        "weak backend, not the paper's setting. Settings were chosen on seed 99 for the "
        "first report (a dev run whose 64-token answer budget cut DiPT rationales short; "
        f"the budget is now {args.max_new_tokens} tokens and training uses {args.n_train} "
        "questions); the SFT rate of this report (1e-3) is the one the zoo's SFT stage was "
        "given on dev seeds, fixed before the report seeds ran.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    args.out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res), flush=True)


if __name__ == "__main__":
    main()
