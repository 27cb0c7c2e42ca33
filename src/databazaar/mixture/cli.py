"""``databazaar mixture``: optimise domain weights for a corpus and train with them.

* ``optimize CORPUS_DIR --budget TOKENS [--method ddo|autoscale|doremi|regmix|dml|uniform]``
  trains proxies on the corpus, writes the weights as JSON and a markdown report (and an
  SVG of the fits for DDO/AutoScale);
* ``train CORPUS_DIR --weights WEIGHTS.json --budget TOKENS`` trains a fresh model with
  those weights, evaluates every domain and saves the model, tokenizer and history;
* ``plan VALIDATION --slug A --slug B ... --tokens N --money CENTS --user U`` plans which
  market text products to buy (:mod:`databazaar.mixture.plan`), ``--buy KEY`` buys it.

``CORPUS_DIR`` is a folder as read by :func:`databazaar.lm.corpus.load_corpus_dir` (one
sub-folder per domain, or ``DOMAIN.jsonl`` files), or the word ``builtin`` for the
offline corpus of :func:`databazaar.lm.corpus.builtin_corpus`. The tokenizer is trained
on the corpus' training split with the given ``--vocab-size``; it is deterministic, so
``optimize`` and ``train`` see the same tokens.

Only ``typer`` is imported at module level; the heavy modules load inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from databazaar.core.cli_options import PasswordOption, UserOption

mixture_app = typer.Typer(
    help=(
        "Optimise data-mixture weights (DDO, AutoScale, DoReMi, RegMix, Data Mixing Laws) "
        "and train with them."
    ),
    no_args_is_help=True,
)


@mixture_app.callback()
def _mixture() -> None:
    """Optimise data-mixture weights and train with them."""


CorpusArg = Annotated[
    str,
    typer.Argument(
        help="corpus folder (sub-folder or DOMAIN.jsonl per domain), or 'builtin'",
        metavar="CORPUS_DIR",
    ),
]
BudgetOpt = Annotated[float, typer.Option("--budget", "-b", help="training tokens")]
SeedOpt = Annotated[int, typer.Option("--seed", help="random seed of every run")]
VocabOpt = Annotated[int, typer.Option("--vocab-size", help="BPE vocabulary size")]
BlockOpt = Annotated[int, typer.Option("--block-size", help="tokens per training block")]
LayerOpt = Annotated[int, typer.Option("--n-layer", help="GPT-2 layers")]
EmbdOpt = Annotated[int, typer.Option("--n-embd", help="GPT-2 width")]
HeadOpt = Annotated[int, typer.Option("--n-head", help="attention heads")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="blocks per optimizer step")]
LrOpt = Annotated[float, typer.Option("--lr", help="peak learning rate")]
EpochsOpt = Annotated[
    float, typer.Option("--epochs", help="passes over each run's data (the paper uses 3)")
]
ThreadsOpt = Annotated[int, typer.Option("--threads", help="torch threads per run")]
MaxDocsOpt = Annotated[
    int, typer.Option("--max-docs", help="documents kept per domain (deterministic sample)")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def _load_data(
    corpus: str,
    *,
    vocab_size: int,
    block_size: int,
    max_docs: int,
    seed: int,
) -> tuple[Any, Any]:
    from databazaar.core.errors import NotFound
    from databazaar.lm.corpus import builtin_corpus, load_corpus_dir
    from databazaar.mixture.api import prepare_data

    path = Path(corpus)
    if corpus == "builtin" and not path.exists():
        mdc = builtin_corpus(max_docs_per_domain=max_docs, seed=seed)
    elif not path.exists():
        raise NotFound(
            f"corpus folder not found: {path}",
            hint="pass a folder with one sub-folder or DOMAIN.jsonl per domain, or 'builtin'",
        )
    else:
        mdc = load_corpus_dir(path, seed=seed, max_docs_per_domain=max_docs, max_chars_per_doc=4000)
    return prepare_data(mdc, vocab_size=vocab_size, block_size=block_size)


def _proxy(
    *,
    n_layer: int,
    n_embd: int,
    n_head: int,
    block_size: int,
    batch_size: int,
    lr: float,
    epochs: float,
    threads: int,
) -> Any:
    from databazaar.lm.model import ModelConfig
    from databazaar.lm.train import TrainConfig
    from databazaar.mixture.proxy import ProxyConfig

    return ProxyConfig(
        model=ModelConfig(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=block_size),
        train=TrainConfig(batch_size=batch_size, lr=lr, epochs=epochs),
        num_threads=threads,
    )


def _parse_budgets(text: str | None) -> tuple[float, float] | None:
    from databazaar.core.errors import InvalidInput

    if text is None:
        return None
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise InvalidInput(
            f"--budgets must be two numbers like 50000,100000, got {text!r}"
        ) from None
    if len(parts) != 2:
        raise InvalidInput(f"--budgets must be two numbers like 50000,100000, got {text!r}")
    return parts  # type: ignore[return-value]


@mixture_app.command("optimize")
def optimize(
    corpus: CorpusArg,
    budget: BudgetOpt,
    method: Annotated[
        str,
        typer.Option("--method", "-m", help="ddo, autoscale, doremi, regmix, dml or uniform"),
    ] = "ddo",
    output: Annotated[Path, typer.Option("--output", "-o", help="weights JSON to write")] = Path(
        "mixture_weights.json"
    ),
    report: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--report", help="markdown report (default: next to --output, .md)"),
    ] = None,
    budgets: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--budgets", help="AutoScale's two small budgets, e.g. 50000,100000"),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="proxy runs: threads, processes or ray")
    ] = "processes",
    n_jobs: Annotated[int, typer.Option("--n-jobs", help="parallel proxy runs")] = 1,
    ray_address: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--ray-address", help="Ray cluster address (default: local Ray)"),
    ] = None,
    seed: SeedOpt = 0,
    vocab_size: VocabOpt = 1024,
    block_size: BlockOpt = 64,
    n_layer: LayerOpt = 2,
    n_embd: EmbdOpt = 64,
    n_head: HeadOpt = 4,
    batch_size: BatchOpt = 16,
    lr: LrOpt = 3e-3,
    epochs: EpochsOpt = 1.0,
    threads: ThreadsOpt = 1,
    max_docs: MaxDocsOpt = 400,
    quiet: QuietOpt = False,
) -> None:
    """Find domain weights for training BUDGET tokens; write weights JSON and a report."""
    from databazaar.core.errors import InvalidInput
    from databazaar.core.progress import progress_bar
    from databazaar.mixture.api import METHODS, optimize_mixture, proxy_runs_needed

    if method not in METHODS:
        raise InvalidInput(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    _, data = _load_data(
        corpus, vocab_size=vocab_size, block_size=block_size, max_docs=max_docs, seed=seed
    )
    proxy = _proxy(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        block_size=block_size,
        batch_size=batch_size,
        lr=lr,
        epochs=epochs,
        threads=threads,
    )
    total = proxy_runs_needed(method, len(data.domains))
    with progress_bar(f"{method} proxy runs", total, quiet=quiet) as advance:
        result = optimize_mixture(
            data,
            method=method,
            budget=budget,
            proxy=proxy,
            seed=seed,
            backend=backend,
            n_jobs=n_jobs,
            ray_address=ray_address,
            budgets=_parse_budgets(budgets),
            progress=advance,
        )
    result.save(output)
    report_path = report or output.with_suffix(".md")
    text = result.to_markdown()
    if method in ("ddo", "autoscale"):
        from databazaar.mixture.autoscale import plot_weights_by_budget
        from databazaar.mixture.ddo import plot_ddo_fits

        svg = output.with_suffix(".svg")
        if method == "ddo":
            plot_ddo_fits(result, svg)
        else:
            plot_weights_by_budget(result, svg)
        text += f"\n![{method}]({svg.name})\n"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(text)
    for d, w in result.weights.items():
        typer.echo(f"{d}\t{w:.4f}")
    typer.echo(f"wrote {output} and {report_path}")


@mixture_app.command("train")
def train(
    corpus: CorpusArg,
    budget: BudgetOpt,
    weights: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--weights", "-w", help="weights JSON (from optimize); default uniform"),
    ] = None,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="folder for the model and history")
    ] = Path("mixture_model"),
    eval_every: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--eval-every", help="evaluate every N steps (default: at the end)"),
    ] = None,
    checkpoint_every: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--checkpoint-every", help="save a checkpoint every N steps"),
    ] = None,
    seed: SeedOpt = 0,
    vocab_size: VocabOpt = 1024,
    block_size: BlockOpt = 64,
    n_layer: LayerOpt = 2,
    n_embd: EmbdOpt = 64,
    n_head: HeadOpt = 4,
    batch_size: BatchOpt = 16,
    lr: LrOpt = 3e-3,
    epochs: EpochsOpt = 1.0,
    threads: ThreadsOpt = 1,
    max_docs: MaxDocsOpt = 400,
    quiet: QuietOpt = False,
) -> None:
    """Train a fresh GPT-2 model on BUDGET tokens mixed by the given weights."""
    from databazaar.core.progress import progress_bar
    from databazaar.lm.train import total_steps
    from databazaar.mixture.api import train_with_weights, uniform_weights
    from databazaar.mixture.result import MixtureResult

    tokenizer, data = _load_data(
        corpus, vocab_size=vocab_size, block_size=block_size, max_docs=max_docs, seed=seed
    )
    w = MixtureResult.load(weights).weights if weights else uniform_weights(data.domains)
    proxy = _proxy(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        block_size=block_size,
        batch_size=batch_size,
        lr=lr,
        epochs=epochs,
        threads=threads,
    )
    n_blocks = max(1, round(budget / block_size))
    steps = total_steps(n_blocks, proxy.train)
    with progress_bar("training", steps, quiet=quiet) as advance:
        _, res = train_with_weights(
            data,
            w,
            budget=budget,
            proxy=proxy,
            seed=seed,
            eval_every=eval_every,
            checkpoint_dir=output_dir / "checkpoints" if checkpoint_every else None,
            checkpoint_every=checkpoint_every,
            progress=advance,
            tokenizer=tokenizer,
            output_dir=output_dir,
        )
    (output_dir / "history.json").write_text(
        json.dumps({"weights": w, "budget": budget, **res.to_dict()}, indent=1)
    )
    final = res.final
    if final is not None:
        for d, loss in final.losses.items():
            typer.echo(f"{d}\t{loss:.4f}")
        typer.echo(f"average\t{final.average:.4f}")
    typer.echo(f"trained {res.steps} steps; wrote {output_dir}")


@mixture_app.command("plan")
def plan_cmd(
    validation: Annotated[
        Path, typer.Argument(help="your validation texts (CSV, Parquet or JSONL with the column)")
    ],
    slug: Annotated[list[str], typer.Option("--slug", help="a text product to mix (repeat)")],
    tokens: Annotated[int, typer.Option("--tokens", help="training tokens you want")],
    money: Annotated[int, typer.Option("--money", help="money budget in minor units (cents)")],
    user: UserOption,
    password: PasswordOption,
    text_column: Annotated[
        str, typer.Option("--text-column", help="the text column of products and validation")
    ] = "text",
    buy: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--buy", help="buy the plan under this idempotency key"),
    ] = None,
    url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--url", help="SQLAlchemy URL (default: the settings' store)"),
    ] = None,
    seed: SeedOpt = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Plan which market text products to buy (DDO on their previews) for TOKENS and MONEY."""
    from databazaar.cli.econ import _echo_json, _economics, _login
    from databazaar.core.io import read_table
    from databazaar.core.money import format_minor
    from databazaar.mixture.plan import PlanSettings, buy_plan, plan_mixture

    rows = read_table(validation).to_dict(orient="records")
    with _economics(url) as econ:
        account = _login(econ, user, password)
        plan = plan_mixture(
            econ,
            account,
            slug,
            rows,
            token_budget=tokens,
            money_budget_minor=money,
            text_column=text_column,
            settings=PlanSettings(seed=seed),
        )
        sales = (
            buy_plan(econ, account, plan.to_buy(), buy, max_total_minor=money)
            if buy is not None and plan.to_buy()
            else []
        )
    if as_json:
        _echo_json({"plan": plan.model_dump(), "sales": [s.model_dump() for s in sales]})
        return
    for x in plan.lines:
        typer.echo(
            f"{x.slug}\tweight {x.weight:.3f}\t{x.tokens} tokens\t{x.rows}/{x.n_rows} rows\t"
            f"{x.mechanism}\t{format_minor(x.cost_minor)}"
        )
    typer.echo(f"total {format_minor(plan.total_minor)} of {format_minor(plan.money_budget_minor)}")
    loss = "-" if plan.predicted_loss is None else f"{plan.predicted_loss:.4f}"
    typer.echo(f"predicted validation loss {loss} (uniform {plan.reference_loss:.4f})")
    typer.echo(plan.note)
    for sale in sales:
        typer.echo(f"bought {sale.slug}: order {sale.order.id}" + (" (replayed)" * sale.replayed))
