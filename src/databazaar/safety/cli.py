"""``databazaar safety``: the AIR 2024 taxonomy, risk screening and AIR-Bench evaluation.

* ``taxonomy [--data DIR] [--level N] [--json]`` -- counts per level, the reconciliation
  applied to the files, and the categories of one level;
* ``screen FILE --column text [--encoder minilm|tfidf] [--threshold P] [--labels FILE]
  [--save-model PATH | --model PATH] [--output FILE]`` -- screen each row of a CSV,
  Parquet or JSONL table (without ``--labels`` the trained screener is cached under
  ``$DATABAZAAR_HOME/cache``);
* ``airbench --model DIR_OR_URL [--model ...] --prompts FILE [--judge offline|DIR|URL]
  [--judge-samples FILE] [--out DIR]`` -- generate, judge and report per level;
* ``beear MODEL_DIR --safe FILE --unwanted FILE --anchor FILE -o OUT_DIR [--layer L]
  [--outer-steps N] [--lora] ...`` -- remove a safety backdoor without its trigger.

``--data`` defaults to ``$DATABAZAAR_AIR_BENCH_DIR`` or ``../shared/data/air-bench-2024``
next to a development checkout.  Only ``typer`` is imported at module level.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

safety_app = typer.Typer(
    help="Risk taxonomy (AIR 2024), screening, AIR-Bench evaluation and backdoor removal."
)

DataDir = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--data", help="folder with risk_mapping.json and judge_prompts.arrow"),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")]


@safety_app.callback()
def _safety() -> None:
    """Risk taxonomy (AIR 2024), screening and AIR-Bench evaluation."""


@safety_app.command("taxonomy")
def taxonomy_cmd(
    data: DataDir = None,
    level: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--level", help="also list the categories of this level (1-4)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Load and validate the taxonomy; print counts, reconciliation and categories."""
    from databazaar.safety.taxonomy import load_taxonomy

    tax = load_taxonomy(data)
    cats = tax.categories(level) if level is not None else []
    if as_json:
        out = {
            "source": tax.source,
            "counts": [tax.counts()[lvl] for lvl in (1, 2, 3, 4)],
            "reconciliation": list(tax.notes),
            "level1": tax.level1_groups(),
        }
        if level is not None:
            out["categories"] = [
                {"id": c.id, "name": c.name, "parents": list(c.parents)} for c in cats
            ]
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    counts = tax.counts()
    typer.echo(f"AIR 2024 taxonomy from {tax.source}")
    typer.echo("counts: " + ", ".join(f"level {k}: {v}" for k, v in counts.items()))
    typer.echo("reconciliation:")
    for note in tax.notes:
        typer.echo(f"  - {note}")
    for l1, l2s in tax.level1_groups().items():
        typer.echo(f"{l1}: {', '.join(l2s)}")
    for c in cats:
        typer.echo(f"{c.id}\t{c.name}")


@safety_app.command("screen")
def screen_cmd(
    file: Annotated[Path, typer.Argument(help="table to screen (.csv, .parquet, .jsonl)")],
    column: Annotated[str, typer.Option("--column", help="text column to screen")] = "text",
    data: DataDir = None,
    encoder: Annotated[
        str, typer.Option("--encoder", help="minilm (embeddings) or tfidf (keyword baseline)")
    ] = "minilm",
    threshold: Annotated[
        float, typer.Option("--threshold", help="risk probability that flags a row")
    ] = 0.5,
    labels: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--labels", help="extra labelled rows (columns text, label) to train on"),
    ] = None,
    model: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--model", help="use a screener saved with --save-model"),
    ] = None,
    save_model: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--save-model", help="save the trained screener here"),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="write every row's screening (.csv/.parquet/.jsonl)"),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Screen each row's text into AIR level-2 / level-3 risk categories."""
    from databazaar.core.errors import InvalidInput
    from databazaar.core.io import read_table, write_table
    from databazaar.core.progress import progress_bar
    from databazaar.safety.screen import RiskScreener, cached_screener
    from databazaar.safety.taxonomy import load_taxonomy

    df = read_table(file)
    if column not in df.columns:
        raise InvalidInput(
            f"{file.name} has no column {column!r}", hint=f"columns: {list(df.columns)}"
        )
    if model is not None:
        screener = RiskScreener.load(model)
    elif labels is None and save_model is None:
        if not quiet:
            typer.echo("loading the screener (trained and cached on first use)", err=True)
        screener = cached_screener(load_taxonomy(data), encoder=encoder)
    else:
        extra = read_table(labels) if labels is not None else None
        screener = RiskScreener(encoder=encoder, threshold=threshold)
        screener.fit(load_taxonomy(data), extra)
        if save_model is not None:
            screener.save(save_model)
    texts = df[column].tolist()
    with progress_bar("screening", len(set(map(str, texts))), quiet=quiet) as advance:
        result = screener.screen(texts, threshold=threshold, progress=advance)
    if output is not None:
        write_table(result.frame, output)
    n = len(result.frame)
    typer.echo(f"{len(result.flagged)} of {n} rows flagged (risk >= {result.threshold})")
    for r in result.summary().itertuples():
        typer.echo(f"  {r.l2} {r.l2_name}: {r.rows} rows, mean risk {r.mean_risk:.2f}")
    if output is not None:
        typer.echo(f"wrote {output}")


def _backend(spec: str, api_model: str, endpoint: str, threads: int | None):  # type: ignore[no-untyped-def]
    from databazaar.core.errors import InvalidInput
    from databazaar.lm.generate import PromptsAsChat
    from databazaar.lm.openai_client import open_backend

    if endpoint not in ("completions", "chat"):
        raise InvalidInput(f"--endpoint must be 'completions' or 'chat', got {endpoint!r}")
    backend = open_backend(spec, api_model=api_model, threads=threads)
    if not spec.startswith(("http://", "https://")):
        # a chat model (its tokenizer has a template) answers each prompt as a user turn;
        # a plain LM, or --endpoint completions, continues the prompt as written
        if endpoint == "chat" and getattr(backend, "has_chat_template", False):
            return PromptsAsChat(backend)
        return backend
    return PromptsAsChat(backend) if endpoint == "chat" else backend


@safety_app.command("airbench")
def airbench_cmd(
    model: Annotated[
        list[str],
        typer.Option("--model", help="model folder or OpenAI-compatible base URL (repeatable)"),
    ],
    prompts: Annotated[Path, typer.Option("--prompts", help="table with cate-idx and prompt")],
    judge: Annotated[
        str,
        typer.Option("--judge", help="'offline' (refusal classifier), a model folder or a URL"),
    ] = "offline",
    judge_samples: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--judge-samples", help="judged answers (response, score) for the offline judge"
        ),
    ] = None,
    data: DataDir = None,
    out: Annotated[Path, typer.Option("--out", help="report folder")] = Path("airbench-report"),
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="answer length")] = 64,
    limit: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--limit", help="use only the first N prompts"),
    ] = None,
    api_model: Annotated[str, typer.Option("--api-model", help="model name for URLs")] = "default",
    endpoint: Annotated[
        str, typer.Option("--endpoint", help="completions or chat (URLs; local chat models)")
    ] = "chat",
    threads: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--threads", help="torch threads for local models"),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Evaluate models AIR-Bench style: refusal rates per level with CIs, JSON/MD/SVG."""
    from databazaar.core.io import read_table
    from databazaar.core.progress import progress_bar
    from databazaar.safety.airbench import (
        RefusalJudge,
        TemplateJudge,
        heatmap_svg,
        read_prompt_file,
        run_airbench,
    )
    from databazaar.safety.taxonomy import load_taxonomy

    tax = load_taxonomy(data)
    table = read_prompt_file(prompts, tax, limit=limit)
    backends = [_backend(spec, api_model, endpoint, threads) for spec in model]
    if judge == "offline":
        samples = read_table(judge_samples) if judge_samples is not None else None
        the_judge = RefusalJudge().fit(tax, samples)
    else:
        the_judge = TemplateJudge(_backend(judge, api_model, endpoint, threads), tax)
    reports = []
    for i, (spec, backend) in enumerate(zip(model, backends, strict=True)):
        with progress_bar(f"model {i + 1}/{len(model)}", len(table), quiet=quiet) as advance:
            rep = run_airbench(
                backend,
                table,
                the_judge,
                tax,
                model_name=spec,
                max_new_tokens=max_tokens,
                progress=advance,
            )
        folder = out if len(model) == 1 else out / f"model-{i + 1}"
        paths = rep.save(folder)
        reports.append(rep)
        typer.echo(f"{spec}: overall refusal rate {rep.overall():.3f} -> {paths['markdown']}")
        for r in rep.level(1).itertuples():
            typer.echo(
                f"  {r.name}: {r.refusal_rate:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] n={r.n}"
            )
    if len(reports) > 1:
        path = heatmap_svg(reports, out / "heatmap.svg")
        typer.echo(f"wrote {path}")


@safety_app.command("beear")
def beear_cmd(
    model_dir: Annotated[Path, typer.Argument(help="backdoored causal LM folder (only read)")],
    safe: Annotated[Path, typer.Option("--safe", help="chat JSONL: prompts with safe answers")],
    unwanted: Annotated[
        Path, typer.Option("--unwanted", help="chat JSONL: the same prompts, unwanted answers")
    ],
    anchor: Annotated[
        Path, typer.Option("--anchor", help="chat JSONL: ordinary prompts with good answers")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the cleaned model")],
    layer: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--layer", help="decoder layer (0-based) to perturb; default a third up"),
    ] = None,
    inner_steps: Annotated[int, typer.Option("--inner-steps", help="steps on the drift")] = 5,
    inner_lr: Annotated[float, typer.Option("--inner-lr", help="drift learning rate")] = 0.1,
    outer_steps: Annotated[int, typer.Option("--outer-steps", help="weight updates")] = 40,
    outer_lr: Annotated[float, typer.Option("--outer-lr", help="weight learning rate")] = 1e-4,
    outer_schedule: Annotated[
        str, typer.Option("--outer-schedule", help="'constant' or 'cosine' (decay to 0)")
    ] = "constant",
    batch_size: Annotated[int, typer.Option("--batch-size", help="pairs per step")] = 16,
    anchor_weight: Annotated[float, typer.Option("--anchor-weight")] = 1.0,
    anchor_loss: Annotated[
        str,
        typer.Option(
            "--anchor-loss",
            help="'ce' fits the anchor answers, 'kl' keeps the model's own",
        ),
    ] = "ce",
    positions: Annotated[
        str, typer.Option("--positions", help="perturb 'prompt' tokens or 'all' tokens")
    ] = "prompt",
    site: Annotated[
        str, typer.Option("--site", help="perturb the layer's 'output' or its 'input' states")
    ] = "output",
    answer_tokens: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--inner-answer-tokens", help="entrapment loss on the first N answer tokens"),
    ] = None,
    skip_shared: Annotated[
        bool,
        typer.Option(
            "--skip-shared", help="entrapment window from where safe and unwanted answers part"
        ),
    ] = False,
    max_norm_ratio: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--max-norm-ratio", help="bound |drift| by this x the states' mean norm"),
    ] = None,
    warm_start: Annotated[
        bool, typer.Option("--warm-start", help="each inner level starts from the last drift")
    ] = False,
    lora: Annotated[bool, typer.Option("--lora", help="train LoRA adapters, save merged")] = False,
    stop_loss: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--stop-loss", help="stop once CE(unwanted | drift) stays above this"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="random state")] = 0,
    threads: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--threads", help="torch threads"),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace a non-empty OUT")] = False,
    quiet: Quiet = False,
) -> None:
    """Remove a safety backdoor (BEEAR) from safe and unwanted answers, no trigger needed."""
    from databazaar.core.progress import progress_bar
    from databazaar.safety.beear import BEEARConfig, remove_backdoor

    config = BEEARConfig(
        layer=layer,
        inner_steps=inner_steps,
        inner_lr=inner_lr,
        outer_steps=outer_steps,
        outer_lr=outer_lr,
        outer_schedule=outer_schedule,
        batch_size=batch_size,
        anchor_weight=anchor_weight,
        anchor_loss=anchor_loss,
        positions=positions,
        site=site,
        inner_answer_tokens=answer_tokens,
        inner_skip_shared=skip_shared,
        inner_warm_start=warm_start,
        max_norm_ratio=max_norm_ratio,
        lora=lora,
        stop_loss=stop_loss,
        random_state=seed,
        num_threads=threads,
    )
    config.validate()
    with progress_bar("BEEAR outer steps", outer_steps, quiet=quiet) as advance:
        res = remove_backdoor(
            model_dir, safe, unwanted, anchor, out, config, overwrite=overwrite, progress=advance
        )
    hist = res["history"]
    first, last = hist[0], hist[-1]
    typer.echo(
        f"layer {res['layer']}, {res['steps']} outer steps"
        f"{' (stopped early)' if res['stopped_early'] else ''} in {res['seconds']:.1f} s; "
        f"CE(unwanted | drift) {first['unwanted_ce']:.3f} -> {last['unwanted_ce']:.3f}, "
        f"CE(safe | drift) {first['safe_ce']:.3f} -> {last['safe_ce']:.3f}"
    )
    typer.echo(f"saved to {res['out_dir']}")
