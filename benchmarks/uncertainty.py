"""UE-TS on CPU: which uncertainty method looks best depends on the quality metric?

The zoo's tiny assistant (built or reused through :func:`databazaar.lm.zoo.build_zoo`
and its cache; a second build with another ``random_state`` is the second ensemble
member) summarises the task suite's ``summarize`` items (fact selection: return the
sentence of a passage about a named person), held-out test split, drawn with the report
seed. Per item: the greedy answer with top-20 log-probabilities and 8 samples at T = 1,
the answer's hidden-state embedding, P(True) and, with the second member, the samples'
sequence log-likelihoods and the token-level ensemble measures along the answer;
Mahalanobis and RDE are fitted on the embeddings of greedy answers to ``--train-items``
items of the task suite's training split.
Every UE method is scored against every offline quality metric (five groups) by PRR
with 95% bootstrap CIs over items; Kendall's tau between the method rankings of the
metric groups (with CIs) says whether the ranking changes with the metric, UE-TS's
finding (He et al., EMNLP 2024). PRR and the methods are cross-checked against
LM-Polygraph 0.7.0 on these same outputs.

Claims checked, each reported as held or not:

1. the full method x metric PRR table with CIs takes < 10 minutes on 2 cores (issue 17);
2. PRR and >= 3 methods agree with LM-Polygraph to <= 1e-9 (issue 17);
3. UE rankings change across metric groups: some group pair has tau < 1 with its CI
   below 1 (UE-TS's finding; the outcome is reported either way);
4. uncertainty predicts quality: PRR > 0 for most (method, metric) pairs (research note).

The assistant is a zoo build with the ``summarizer`` recipe (``SUMMARIZER_MIX`` below:
the default model, most SFT data on the ``summarize`` family), fixed before any report
run: ``ZooConfig.small()``'s assistant cannot summarise at all (every relevance metric
sits at its floor) and the default recipe sees only 300 summaries.  Development used
item seed 99; the report uses a fresh item seed (``--seed``). The one choice made on
the dev seed: 300 training answers for the density fit, because a micro run (6 items,
104 training answers) showed the covariance of the 128-wide embeddings is singular with
fewer training answers than dimensions (Mahalanobis distances ~1e7, meaningless). Judge metrics are
not run here: no judge model that answers with scores exists offline (the path is tested
against the local OpenAI-compatible server in tests/uncertainty).

    flock /tmp/databazaar-heavy.lock python benchmarks/uncertainty.py --seed 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from databazaar.lm.local_backend import LocalModelBackend
from databazaar.lm.zoo import ZooConfig, build_zoo
from databazaar.uncertainty import (
    ESTIMATORS,
    OFFLINE_METRICS,
    ensemble_scores,
    generate_outputs,
    run_benchmark,
    task_items,
)
from databazaar.uncertainty.benchmark import merge_duplicates
from databazaar.uncertainty.crosscheck import compare, polygraph_python
from databazaar.uncertainty.internals import TOKEN_ESTIMATORS, add_model_statistics

OUT = Path(__file__).resolve().parent / "results"
RUNTIME_MAX = 600.0


#: a summarisation-weighted zoo recipe: the default model and optimiser, with most of the
#: SFT data on the ``summarize`` family (the task UE-TS measures) and a little of the
#: others so the assistant stays an assistant.  Fixed before any run with a report seed.
SUMMARIZER_MIX = {
    "summarize": 4000,
    "lookup": 600,
    "arithmetic": 600,
    "unsafe": 300,
    "benign": 300,
    "multiple_choice": 100,
    "strings": 50,
    "classify": 50,
}


def recipe(name: str) -> ZooConfig:
    if name == "small":
        return ZooConfig.small()
    if name == "summarizer":
        base = ZooConfig.gpt2_v3()  # the recipe this benchmark was reported on
        return replace(
            base,
            n_train_per_family=dict(SUMMARIZER_MIX),
            sft=replace(base.sft, max_steps=2000),
        )
    return ZooConfig()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=7, help="report seed (dev seed: 99)")
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument(
        "--train-items", type=int, default=300, help="training items fitting Mahalanobis/RDE"
    )
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recipe", choices=("small", "default", "summarizer"), default="summarizer")
    ap.add_argument(
        "--member-seed", type=int, default=1, help="random_state of member 2 (-1: no ensemble)"
    )
    ap.add_argument(
        "--member-dir", default=None, help="use this assistant folder as member 2 instead"
    )
    ap.add_argument("--zoo-root", default=None, help="zoo cache root (default: ~/.databazaar)")
    ap.add_argument("--out", default=str(OUT / "uncertainty"))
    ap.add_argument("--no-crosscheck", action="store_true", help="skip LM-Polygraph (dev runs)")
    args = ap.parse_args()

    load_start = os.getloadavg()
    cfg = replace(recipe(args.recipe), num_threads=args.threads)
    t_zoo = time.perf_counter()
    zoo = build_zoo(cfg, out=args.zoo_root)
    member = None
    member_dir = args.member_dir
    if member_dir is None and args.member_seed >= 0:
        member = build_zoo(replace(cfg, random_state=args.member_seed), out=args.zoo_root)
        member_dir = str(member.assistant_dir)
    zoo_seconds = time.perf_counter() - t_zoo

    t0 = time.perf_counter()
    backend = LocalModelBackend(zoo.assistant_dir, num_threads=args.threads)
    items = task_items(args.items, random_state=args.seed)
    outputs = generate_outputs(
        backend, items, n_samples=args.samples, max_new_tokens=32, random_state=args.seed
    )
    train_items = task_items(args.train_items, split="train", random_state=args.seed)
    train_outputs = generate_outputs(backend, train_items, n_samples=0, max_new_tokens=32)
    token_level = {cls.name for cls in TOKEN_ESTIMATORS}
    skipped: dict[str, str] = {}
    members = []
    if member_dir is not None:
        members = [LocalModelBackend(member_dir, num_threads=args.threads)]
        if members[0].tokenizer.get_vocab() != backend.tokenizer.get_vocab():
            skipped.update({m: "the members' tokenizers differ" for m in token_level})
    else:
        skipped.update({m: "no second member" for m in ESTIMATORS if m.startswith("Ensemble")})
        skipped.update({m: "no second member" for m in token_level})
    methods = [m for m in ESTIMATORS if m not in skipped]
    add_model_statistics(backend, outputs, methods, members=members, train_outputs=train_outputs)
    if members:
        ensemble_scores(outputs, [backend, *members])
    gen_seconds = time.perf_counter() - t0
    metrics = list(OFFLINE_METRICS)
    report = run_benchmark(
        items,
        outputs,
        methods,
        metrics,
        relation="rougeL",
        train_outputs=train_outputs,
        n_boot=args.boot,
        random_state=args.seed,
    )
    runtime = time.perf_counter() - t0
    report.timings["generation_statistics_and_ensemble_scoring"] = gen_seconds

    # cross-check on these outputs: every method, and PRR of each method vs 3 metrics
    t_x = time.perf_counter()
    python = None if args.no_crosscheck else polygraph_python()
    cross: dict[str, Any] = {"skipped": "LM-Polygraph not available or --no-crosscheck"}
    if python is not None:
        # PRR of every method against three metrics that vary over the items (a constant
        # metric has no PRR: NaN here, the raw area in LM-Polygraph)
        varying = [
            g
            for g in ("rougeL", "bertscore_minilm", "well_formed", "chrf", "fact_recall")
            if np.ptp(report.metric_values[g]) > 0
        ][:3]
        cases = []
        for e in methods:
            for g in varying:
                u, m, _ = merge_duplicates(report.uncertainties[e], report.metric_values[g])
                cases.append((u, m))
        cross = compare(outputs, cases, python, methods=methods, train_outputs=train_outputs)
        cross["n_prr_cases"] = len(cases)
        cross["prr_case_metrics"] = varying
    cross_seconds = time.perf_counter() - t_x

    d = report.to_dict()
    prr_vals = [v for row in d["prr"].values() for v in row.values() if v is not None]
    summary = d["kendall_tau"]["summary"]
    diffs = cross.get("method_max_abs_diff", {})
    exact = [m for m, v in diffs.items() if v <= 1e-9]
    claims = {
        "runtime_under_10_min": {
            "value": runtime,
            "target": f"< {RUNTIME_MAX:.0f} s",
            "held": runtime < RUNTIME_MAX,
        },
        "matches_lm_polygraph": {
            "value": cross.get("prr_max_abs_diff"),
            "target": "PRR diff <= 1e-9 and >= 3 methods <= 1e-9",
            "held": bool(diffs) and cross["prr_max_abs_diff"] <= 1e-9 and len(exact) >= 3,
        },
        "rankings_change_across_groups": {
            "value": summary["mean_group_tau"],
            "target": "some group pair with tau CI below 1",
            "held": bool(summary["pairs_with_tau_ci_below_1"]),
        },
        "prr_positive_for_most_pairs": {
            "value": float(np.mean([v > 0 for v in prr_vals])),
            "target": "> 0.5 of pairs with PRR > 0",
            "held": float(np.mean([v > 0 for v in prr_vals])) > 0.5,
        },
    }
    result = {
        "benchmark": "uncertainty (UE-TS on the tiny zoo assistant)",
        "seed": args.seed,
        "zoo": {
            "recipe": args.recipe,
            "hash": zoo.meta.get("hash"),
            "member_hash": None if member is None else member.meta.get("hash"),
            "member_dir": member_dir,
            "member_random_state": args.member_seed,
            "build_or_load_seconds": zoo_seconds,
        },
        "items": args.items,
        "train_items": args.train_items,
        "methods_not_run": skipped,
        "samples": args.samples,
        **d,
        "prr_max_abs_diff_vs_lm_polygraph": cross.get("prr_max_abs_diff"),
        "lm_polygraph_crosscheck": cross,
        "crosscheck_seconds": cross_seconds,
        "runtime_seconds": runtime,
        "claims": claims,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": list(load_start),
            "load_average_at_end": list(os.getloadavg()),
            "threads": args.threads,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(result, indent=1))
    md = [
        "# Uncertainty estimation benchmark (UE-TS on CPU)",
        "",
        f"Tiny zoo assistant (recipe `{args.recipe}` in benchmarks/uncertainty.py, "
        f"hash {zoo.meta.get('hash')}; "
        + (
            f"ensemble member 2: random_state {args.member_seed}, hash {member.meta.get('hash')})"
            if member is not None
            else f"ensemble member 2: the assistant in {member_dir})"
            if member_dir is not None
            else "no ensemble member: ensemble methods not run)"
        )
        + f" on {args.items} held-out `summarize` items drawn "
        f"with report seed {args.seed} (development used seed 99); greedy answer + "
        f"{args.samples} samples at T = 1; relation between samples: ROUGE-L. "
        f"Load average at start {load_start[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "| claim | value | target | held |",
        "|---|---|---|---|",
    ]
    for k, c in claims.items():
        v = c["value"]
        md.append(f"| {k} | {'n/a' if v is None else f'{v:.3g}'} | {c['target']} | {c['held']} |")
    md += [
        "",
        f"Runtime {runtime:.0f} s (generation of {args.items} test and {args.train_items} "
        f"training answers, embeddings, P(True), ensemble scoring {gen_seconds:.0f} s, "
        f"estimators {report.timings['estimators']:.1f} s, metrics "
        f"{report.timings['metrics']:.1f} s, PRR + bootstrap + tau + clusters "
        f"{report.timings['statistics']:.1f} s); zoo build/load {zoo_seconds:.0f} s and the "
        f"LM-Polygraph cross-check {cross_seconds:.0f} s are not counted.",
        "",
    ]
    if diffs:
        rel_md = cross["method_max_rel_diff"].get("Mahalanobis", float("nan"))
        md += [
            "Largest |ours - LM-Polygraph| per method on these outputs: "
            + ", ".join(f"{m} {v:.1e}" for m, v in diffs.items())
            + f"; PRR over {cross['n_prr_cases']} cases: {cross['prr_max_abs_diff']:.1e}. "
            f"Mahalanobis relative: {rel_md:.1e} "
            "(LM-Polygraph inverts the covariance in float32). Not in LM-Polygraph 0.7.0's "
            "working estimators (its token-level ensemble calculator is disabled), so not "
            f"cross-checked: {', '.join(cross['not_checked']) or 'none'}.",
            "",
        ]
    if skipped:
        md += [f"Methods not run: {', '.join(f'{k} ({v})' for k, v in skipped.items())}.", ""]
    md.append(report.to_markdown(title="Results").split("\n", 2)[2])
    Path(f"{out}.md").write_text("\n".join(md))
    Path(f"{out}_heatmap.svg").write_text(report.heatmap_svg())
    if report.clusters is not None:
        Path(f"{out}_dendrogram.svg").write_text(report.dendrogram_svg())
    print("\n".join(md[:12]))


if __name__ == "__main__":
    main()
