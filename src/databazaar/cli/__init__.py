"""The ``databazaar`` command line.

Commands are thin: they parse arguments, call library functions and render results.
Heavy modules are imported inside the commands so ``databazaar --help`` stays fast.
Errors from :mod:`databazaar.core.errors` become a one-line message and the error's
exit code; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core

from databazaar import __version__
from databazaar.core.errors import DatabazaarError


class _Group(typer.core.TyperGroup):
    """Turns databazaar errors into a one-line message and the error's exit code."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except DatabazaarError as exc:
            typer.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


app = typer.Typer(
    cls=_Group,
    name="databazaar",
    help="An open data market for AI: value, price, compose, enrich and vet training data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"databazaar {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    """databazaar command line."""


def _console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=False)


# ---------------------------------------------------------------------------- value
@app.command("value")
def value_cmd(
    train: Annotated[Path, typer.Argument(help="training table (.csv, .parquet or .jsonl)")],
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


# --------------------------------------------------------------------------- market
def _add_market_commands() -> None:
    from databazaar.cli.market import db_app, ledger_app

    app.add_typer(db_app, name="db")
    app.add_typer(ledger_app, name="ledger")
    from databazaar.mixture.cli import mixture_app

    app.add_typer(mixture_app, name="mixture")
    from databazaar.cli.econ import econ_app

    app.add_typer(econ_app, name="econ")
    from databazaar.cli.gate import gate_app

    app.add_typer(gate_app, name="gate")
    from databazaar.lm.cli import lm_app

    app.add_typer(lm_app, name="lm")
    from databazaar.safety.cli import safety_app

    app.add_typer(safety_app, name="safety")
    from databazaar.uncertainty.cli import uncertainty_app

    app.add_typer(uncertainty_app, name="uncertainty")
    from databazaar.enrich.cli import enrich_app

    app.add_typer(enrich_app, name="enrich")
    from databazaar.alignment.cli import align_app

    app.add_typer(align_app, name="align")


_add_market_commands()


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
        typer.Option("--home", help="data home for the demo store (default: a temp folder)"),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="after the tour, serve the demo market's web UI")
    ] = False,
    host: Annotated[str, typer.Option("--host", help="interface for --serve")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port for --serve")] = 8000,
) -> None:
    """Walk through the product: value a dataset, then run the market on SQLite."""
    from databazaar.demo import run_demo

    say = _console().print
    if serve:
        import tempfile

        from databazaar.server.web.demo import serve_demo

        serve_demo(home or Path(tempfile.mkdtemp(prefix="databazaar-demo-")), host, port, say)
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
