"""``databazaar uncertainty``: benchmark UE methods, or score outputs a user already has.

* ``bench --model DIR_OR_URL --data FILE.jsonl|tasks:N --methods ... --metrics ...
  [--relation rougeL] [--judge URL] [--member DIR]... [--samples 8] [--out DIR]`` generates
  a greedy answer and samples per item, estimates uncertainty, scores quality and writes
  the PRR report (JSON, markdown, SVG heatmap and dendrogram);
* ``score OUTPUTS.jsonl --methods ... --out SCORED.jsonl`` adds an ``uncertainty`` object
  to every record of a JSONL of outputs (``{"input", "output", "samples"?}``, answers as
  text or with ``token_logprobs`` / ``top_logprobs``, as the OpenAI-compatible backend
  returns them).

Only ``typer`` is imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

uncertainty_app = typer.Typer(
    help="Uncertainty estimation for generated text: benchmark methods (PRR) or score outputs."
)

DEFAULT_METHODS = (
    "MSP,Perplexity,MeanTokenEntropy,MonteCarloSequenceEntropy,SemanticEntropy,"
    "LexicalSimilarity,EigValLaplacian,Eccentricity,NumSemSets"
)
Methods = Annotated[
    str, typer.Option("--methods", help="comma-separated UE methods (see docs/uncertainty.md)")
]
Relation = Annotated[
    str, typer.Option("--relation", help="relation between samples: rougeL, jaccard or minilm")
]


@uncertainty_app.callback()
def _uncertainty() -> None:
    """Benchmark uncertainty estimators (UE-TS) or add uncertainty scores to outputs."""


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _count(spec: str) -> int:
    from databazaar.core.errors import InvalidInput

    try:
        return int(spec[6:])
    except ValueError:
        raise InvalidInput(f"tasks:N needs a number, got {spec!r}") from None


@uncertainty_app.command("bench")
def bench_cmd(
    model: Annotated[str, typer.Option("--model", help="model folder or OpenAI-compatible URL")],
    data: Annotated[
        str,
        typer.Option("--data", help="JSONL of {source, reference, prompt?, facts?} or tasks:N"),
    ],
    methods: Methods = DEFAULT_METHODS,
    metrics: Annotated[
        str,
        typer.Option(
            "--metrics",
            help="comma-separated metrics; 'offline' = all offline ones, "
            "'judges' = the 20 judge prompts (needs --judge)",
        ),
    ] = "offline",
    relation: Relation = "rougeL",
    judge: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--judge", help="judge model folder or OpenAI-compatible URL"),
    ] = None,
    member: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--member", help="extra ensemble member folder (repeatable)"),
    ] = None,
    train_data: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--train-data",
            help="JSONL of items or tasks:N (training split) to fit Mahalanobis and RDE on",
        ),
    ] = None,
    samples: Annotated[int, typer.Option("--samples", help="sampled answers per item")] = 8,
    temperature: Annotated[float, typer.Option("--temperature", help="sampling temperature")] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="answer length in tokens")] = 40,
    completions: Annotated[
        bool, typer.Option("--completions", help="send plain prompts instead of chat turns")
    ] = False,
    api_model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--api-model", help="model name for URLs"),
    ] = None,
    api_key: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--api-key", envvar="DATABAZAAR_API_KEY", help="bearer key for URLs"),
    ] = None,
    boot: Annotated[int, typer.Option("--boot", help="bootstrap resamples for CIs")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="random seed (sampling, bootstrap)")] = 0,
    out: Annotated[Path, typer.Option("--out", help="report folder")] = Path("uncertainty-report"),
    threads: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--threads", help="torch CPU threads"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Generate, estimate uncertainty, score quality and report PRR per method and metric."""
    import time

    from databazaar.core.errors import InvalidInput
    from databazaar.core.progress import progress_bar
    from databazaar.lm.generate import PromptsAsChat
    from databazaar.lm.openai_client import open_backend
    from databazaar.uncertainty.estimators import get_estimator
    from databazaar.uncertainty.internals import add_model_statistics, check_model_statistics
    from databazaar.uncertainty.metrics import OFFLINE_METRICS, judge_metric_names
    from databazaar.uncertainty.runner import (
        check_metric_inputs,
        ensemble_scores,
        generate_outputs,
        read_items,
        run_benchmark,
        task_items,
    )

    method_list = _split(methods)
    metric_list: list[str] = []
    for m in _split(metrics):
        metric_list += (
            list(OFFLINE_METRICS)
            if m == "offline"
            else judge_metric_names()
            if m == "judges"
            else [m]
        )
    if not method_list or not metric_list:
        raise InvalidInput("give at least one method and one metric")
    for m in method_list:
        get_estimator(m, relation=relation)
    judge_backend = None
    if judge is not None:
        judge_backend = open_backend(judge, api_model=api_model, api_key=api_key, threads=threads)
        if judge.startswith(("http://", "https://")):
            judge_backend = PromptsAsChat(judge_backend)
    if data.startswith("tasks:"):
        items = task_items(_count(data), random_state=seed)
    else:
        items = read_items(data)
    check_metric_inputs(items, metric_list, judge_backend)
    density = [m for m in method_list if "embedding" in get_estimator(m).needs]
    if density and train_data is None:  # checked before any model is loaded
        raise InvalidInput(
            f"{get_estimator(density[0]).name} needs train_embeddings: give --train-data",
            hint="a JSONL of items or tasks:N from the task suite's training split",
        )
    token_level = [m for m in method_list if "token_ensemble" in get_estimator(m).needs]
    if token_level and not member:
        raise InvalidInput(
            f"{get_estimator(token_level[0]).name} needs token_ensemble: no ensemble member "
            "was given",
            hint="add --member with a second model folder",
        )
    backend = open_backend(model, api_model=api_model, api_key=api_key, threads=threads)
    members = [open_backend(d, threads=threads) for d in member or []]
    check_model_statistics(backend, method_list, members=members)
    train_items = []
    if density and train_data is not None:
        train_items = (
            task_items(_count(train_data), split="train", random_state=seed)
            if train_data.startswith("tasks:")
            else read_items(train_data)
        )
    t0 = time.perf_counter()
    with progress_bar("generating", 2 * len(items), quiet=quiet) as advance:
        outputs = generate_outputs(
            backend,
            items,
            n_samples=samples,
            temperature=temperature,
            max_new_tokens=max_tokens,
            chat=not completions,
            random_state=seed,
            progress=advance,
        )
    train_outputs = (
        generate_outputs(
            backend, train_items, n_samples=0, max_new_tokens=max_tokens, chat=not completions
        )
        if train_items
        else []
    )
    add_model_statistics(
        backend,
        outputs,
        method_list,
        members=members,
        train_outputs=train_outputs,
        chat=not completions,
    )
    if members:
        ensemble_scores(outputs, [backend, *members], chat=not completions)
    gen_seconds = time.perf_counter() - t0
    report = run_benchmark(
        items,
        outputs,
        method_list,
        metric_list,
        relation=relation,
        judge=judge_backend,
        train_outputs=train_outputs or None,
        n_boot=boot,
        random_state=seed,
        meta={"model": model, "data": data, "n_samples": samples, "relation": relation},
    )
    report.timings["generation"] = gen_seconds
    paths = report.save(out)
    typer.echo(report.to_markdown())
    for kind, p in paths.items():
        typer.echo(f"wrote {kind}: {p}")


@uncertainty_app.command("score")
def score_cmd(
    outputs: Annotated[Path, typer.Argument(help="JSONL of {input, output, samples?}")],
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the scored JSONL")],
    methods: Methods = "MSP,MeanTokenEntropy,LexicalSimilarity",
    relation: Relation = "rougeL",
    train: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--train", help="JSONL of training outputs with embeddings (Mahalanobis, RDE)"
        ),
    ] = None,
) -> None:
    """Add uncertainty scores (higher = less certain) to every record of OUTPUTS."""
    from databazaar.uncertainty.runner import score_file

    scores = score_file(outputs, out, _split(methods), relation=relation, train=train)
    n = len(next(iter(scores.values())))
    typer.echo(f"scored {n} outputs with {', '.join(scores)}; wrote {out}")
