"""The ``databazaar`` command line.

Commands are thin: they parse arguments, call library functions and render results.
Heavy modules are imported inside the commands, and the command groups
(:data:`~databazaar.cli.group.LAZY_GROUPS`) load only when used, so ``databazaar --help``
stays fast and ``databazaar value`` runs on the core install (no extras).  Errors from
:mod:`databazaar.core.errors` become a one-line message and the error's exit code; so do
a missing extra (exit 2) and a store that is missing or not migrated (exit 3); anything
else is a bug and shows its traceback.  Help is plain Click help; results are printed
plain and unwrapped when standard output is not a terminal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from databazaar import __version__
from databazaar.cli.group import LAZY_GROUPS, RootGroup, plain_help
from databazaar.core.errors import DatabazaarError

__all__ = ["LAZY_GROUPS", "app", "main", "plain_help"]

app = typer.Typer(
    cls=RootGroup,
    name="databazaar",
    help="An open data market for AI: value, price, compose, enrich and vet training data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"databazaar {__version__}")
        raise typer.Exit()


def _set_home(home: Path | None) -> Path | None:
    if home is not None:
        import os

        from databazaar.core.config import get_settings

        os.environ["DATABAZAAR_HOME"] = str(home.expanduser().resolve())
        get_settings.cache_clear()
    return home


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
    home: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--home",
            callback=_set_home,
            help="data home (default: DATABAZAAR_HOME, else ~/.databazaar); its "
            "databazaar.db is the store when DATABASE_URL is unset",
        ),
    ] = None,
) -> None:
    """databazaar command line."""


def _console():  # type: ignore[no-untyped-def]
    """Rich console for results: plain, unwrapped lines when stdout is not a terminal."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console(stderr=False)
    return Console(stderr=False, width=10_000, soft_wrap=True, no_color=True, highlight=False)


# ---------------------------------------------------------------------------- value
@app.command("value")
def value_cmd(
    train: Annotated[
        Path, typer.Argument(metavar="TRAIN", help="training table (.csv, .parquet or .jsonl)")
    ],
    target: Annotated[str, typer.Option("--target", "-t", help="label column")],
    test: Annotated[Path, typer.Option("--test", help="test/validation table, same columns")],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help="knn-shapley, knn-regression, threshold-knn, "
            "tmc-shapley, beta-shapley, banzhaf, loo, asymmetric-knn, "
            "asymmetric-mc",
        ),
    ] = "knn-shapley",
    k: Annotated[int, typer.Option("-k", help="neighbours for the KNN methods")] = 5,
    tau: Annotated[
        Optional[float], typer.Option("--tau", help="radius for threshold-knn")  # noqa: UP045
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="write values here (.csv or .parquet)"),
    ] = None,
    features: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--features", help="comma-separated feature columns (default: numeric)"),
    ] = None,
    groups: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--groups", help="column of group ids: one value per group"),
    ] = None,
    order: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--order", help="group order a,b,c for the asymmetric methods"),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model", help="model for Monte Carlo methods: logistic, knn, tree, naive-bayes"
        ),
    ] = "logistic",
    budget: Annotated[
        int, typer.Option("--budget", help="permutations/subsets for Monte Carlo methods")
    ] = 200,
    ci: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--ci", help="confidence level of intervals, e.g. 0.95"),
    ] = None,
    ci_samples: Annotated[
        int,
        typer.Option(
            "--ci-samples",
            help="tmc-shapley --ci: anchors and inner draws per row (2*S*S model fits per row)",
        ),
    ] = 10,
    n_jobs: Annotated[int, typer.Option("--n-jobs", "-j", help="workers (-1: all cores)")] = -1,
    backend: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--backend",
            help="threads, processes or ray (default: threads for KNN methods, "
            "processes for model-based Monte Carlo)",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
    top: Annotated[int, typer.Option("--top", help="rows shown in the summary")] = 5,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="print the result as JSON (method, parameters, one record per row)"
        ),
    ] = False,
) -> None:
    """Value every training row (or group) for the task defined by the test table."""
    import time
    import warnings

    from databazaar.core.io import read_table
    from databazaar.core.progress import progress_bar
    from databazaar.valuation.tabular import value_table

    train_df = read_table(train)
    test_df = read_table(test)
    feats = [f.strip() for f in features.split(",") if f.strip()] if features else None
    order_list = [o.strip() for o in order.split(",") if o.strip()] if order else None
    is_mc = method in ("tmc-shapley", "beta-shapley", "banzhaf", "asymmetric-mc")
    total = budget if is_mc else len(test_df)
    if ci is not None:  # intervals advance the bar once per training row
        total = total + len(train_df) if is_mc else len(train_df)
    start = time.perf_counter()
    with (
        warnings.catch_warnings(record=True) as caught,
        progress_bar(f"{method}", total, quiet=quiet) as advance,
    ):
        warnings.simplefilter("always", UserWarning)
        warnings.simplefilter("always", RuntimeWarning)
        result, prob = value_table(
            train_df,
            test_df,
            target,
            method,
            k=k,
            tau=tau,
            features=feats,
            group_column=groups,
            order=order_list,
            model=model,
            budget=budget,
            ci=ci,
            ci_samples=ci_samples,
            n_jobs=n_jobs,
            backend=backend,
            random_state=seed,
            progress=advance,
        )
    elapsed = time.perf_counter() - start
    if output is not None:
        result.save(output)
    if as_json:
        import json

        payload = {
            "method": result.method,
            "params": result.params,
            "confidence": result.confidence,
            "seconds": round(elapsed, 4),
            "warnings": list(dict.fromkeys(str(w.message) for w in caught)),
            "values": json.loads(result.to_frame().to_json(orient="records")),
        }
        typer.echo(json.dumps(payload, default=str))
        return
    _print_values(result, prob, train_df, target, elapsed, output, top)
    # library warnings (e.g. intervals outside their calibrated regime) as one line each
    for text in dict.fromkeys(
        str(w.message) for w in caught if issubclass(w.category, (UserWarning, RuntimeWarning))
    ):
        _console().print(f"[yellow]warning:[/yellow] {text}", highlight=False)
    if method.startswith("asymmetric") and groups:
        totals = (
            result.to_frame()
            .assign(group=train_df[groups].to_numpy()[result.ids])
            .groupby("group", sort=False)["value"]
            .sum()
        )
        ordered = [(g, totals.get(g, 0.0)) for g in order_list or []]
        _console().print(
            "group values (in order): " + ", ".join(f"{g}={v:.6g}" for g, v in ordered)
        )


def _print_values(result, prob, train_df, target, elapsed, output, top):  # type: ignore[no-untyped-def]
    from rich.table import Table

    console = _console()
    unit = "groups" if prob.groups is not None else "rows"
    console.print(
        f"[bold]{result.method}[/bold]: {len(result)} {unit} valued on "
        f"{prob.x_test.shape[0]} test rows with {len(prob.features)} features "
        f"in {elapsed:.2f} s"
    )
    if prob.ignored:
        console.print(f"ignored non-numeric columns: {', '.join(prob.ignored)}")
    table = Table(title="highest and lowest values")
    table.add_column("rank", justify="right")
    table.add_column("group" if prob.groups is not None else "row", justify="right")
    if prob.groups is None:
        table.add_column(target)
    table.add_column("value", justify="right")
    table.add_column("stderr", justify="right")
    if result.has_ci:
        table.add_column(f"{result.confidence:.0%} CI", justify="right")
    ranking = result.ranking()
    n = len(ranking)
    shown = list(range(min(top, n)))
    shown += [i for i in range(max(n - top, 0), n) if i not in shown]
    for rank in shown:
        pos = int(ranking[rank])
        row = [str(rank + 1), str(result.ids[pos])]
        if prob.groups is None:
            row.append(str(train_df[target].iloc[int(result.ids[pos])]))
        row += [f"{result.values[pos]:.6g}", f"{result.stderr[pos]:.2g}"]
        if result.has_ci:
            row.append(f"[{result.ci_low[pos]:.4g}, {result.ci_high[pos]:.4g}]")
        table.add_row(*row)
    console.print(table)
    console.print(
        f"sum of values {result.values.sum():.6g}; {int((result.values < 0).sum())} negative"
    )
    if output is not None:
        console.print(f"wrote {output}")


# ---------------------------------------------------------------------------- serve
@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="worker processes (uvicorn)")
    ] = 1,
    log_level: Annotated[
        str, typer.Option("--log-level", help="critical, error, warning, info, debug or trace")
    ] = "info",
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="log every request")
    ] = True,
) -> None:
    """Serve the market API and web pages on the data home's store (DATABAZAAR_HOME).

    The store is migrated first; then WORKERS processes share the port.  Login throttling
    and cached catalog answers are kept in the store, so every worker sees the same.
    """
    from databazaar.server.app import serve

    serve(host, port, workers=workers, log_level=log_level, access_log=access_log)


# ----------------------------------------------------------------------------- demo
@app.command("demo")
def demo_cmd(
    home: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--home",
            help="data home to seed (new or empty, or an earlier demo's); default: a new "
            "folder ./databazaar-demo-DATE-TIME, reported and kept",
        ),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="seed the demo market and serve its web UI")
    ] = False,
    host: Annotated[str, typer.Option("--host", help="interface for --serve")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port for --serve")] = 8000,
) -> None:
    """Walk through the product: value a dataset, then run the market on SQLite."""
    from databazaar.demo import default_demo_home, run_demo

    say = _console().print
    if serve:
        from databazaar.server.web.demo import serve_demo

        serve_demo(home or default_demo_home(), host, port, say)
        return
    run_demo(home, say)


def main() -> None:
    """Entry point: run the app, turning databazaar errors into clean exits."""
    try:
        app()
    except DatabazaarError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


_ = Path  # used by commands below
