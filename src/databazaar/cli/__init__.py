"""The ``databazaar`` command line.

Commands are thin: they parse arguments, call library functions and render results.
Heavy modules are imported inside the commands so ``databazaar --help`` stays fast.
Errors from :mod:`databazaar.core.errors` become a one-line message and the error's
exit code; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
import typer.core
import typer.main

from databazaar import __version__
from databazaar.core.errors import DatabazaarError, MissingExtra, missing_extra

# Command groups loaded only when used, so ``databazaar --help`` and ``databazaar value``
# work on the core install (no extras).  name -> (module, Typer attribute, one-line help,
# the extra every command of the group needs or None); ``tests/test_cli_every_command.py``
# checks each help against the loaded group's.
LAZY_GROUPS: dict[str, tuple[str, str, str, str | None]] = {
    "db": ("databazaar.cli.market", "db_app", "Manage the market database.", "market"),
    "ledger": ("databazaar.cli.market", "ledger_app", "Inspect the market ledger.", "market"),
    "mixture": (
        "databazaar.mixture.cli",
        "mixture_app",
        "Optimise data-mixture weights (DDO, AutoScale, DoReMi, RegMix) and train with them.",
        "lm",
    ),
    "econ": (
        "databazaar.cli.econ",
        "econ_app",
        "Market economics: value search, pricing, revenue splits, DP.",
        "market",
    ),
    "gate": (
        "databazaar.cli.gate",
        "gate_app",
        "The listing gate: screening policy, review queue, audit.",
        "market",
    ),
    "lm": (
        "databazaar.lm.cli",
        "lm_app",
        "Fine-tune, evaluate, generate with or serve a causal LM (local folder).",
        "lm",
    ),
    # some safety and uncertainty commands run without the lm extra (TF-IDF screening,
    # the taxonomy, scoring given outputs): their commands name it when they need it
    "safety": (
        "databazaar.safety.cli",
        "safety_app",
        "Risk taxonomy (AIR 2024), screening, AIR-Bench evaluation and backdoor removal.",
        None,
    ),
    "uncertainty": (
        "databazaar.uncertainty.cli",
        "uncertainty_app",
        "Uncertainty estimation for generated text: benchmark methods (PRR) or score outputs.",
        None,
    ),
}
# the module whose absence means an extra is not installed
_EXTRA_PROBE = {"market": "sqlalchemy", "lm": "torch"}


def plain_help(command: Any) -> Any:
    """Plain help for ``command`` and everything under it: no Rich panels (whose type
    column showed flags as ``<bool>``) and positionals named in capitals, ``TRAIN``
    rather than ``{train}``."""
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    for param in command.params:
        if isinstance(param, typer.core.TyperArgument) and param.name:
            if param.metavar is None:
                param.metavar = param.name.upper()
            shown = param.metavar + ("..." if param.nargs != 1 else "")
            shown = shown if param.required else f"[{shown}]"
            param._usage_display_name = lambda shown=shown: shown  # type: ignore[method-assign]
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)
    return command


def _needs_extra(name: str, error: DatabazaarError) -> Any:
    """Stands in for a group whose extra is missing: any use prints ``error`` (exit 2)."""
    stub = typer.Typer(add_completion=False)

    @stub.command(
        name,
        help=f"(needs an extra) {error.message}",
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def fail() -> None:
        raise error

    return typer.main.get_command(stub)


def _store_error(exc: BaseException) -> DatabazaarError | None:
    """A one-line error for a store that is missing or not migrated (SQLAlchemy's)."""
    if "sqlalchemy" not in sys.modules:
        return None
    from databazaar.market.db import explain_store_error

    return explain_store_error(exc)


class _Group(typer.core.TyperGroup):
    """The root group: lazy sub-groups, and every expected failure as one line.

    databazaar errors print ``error: message (hint)`` and exit with the error's code; a
    missing optional dependency names the extra to install (exit 2); a store that is
    missing or not migrated says to run ``databazaar db upgrade`` (exit 3).  Anything
    else is a bug and shows its traceback.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *LAZY_GROUPS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in LAZY_GROUPS:
            cmd = super().get_command(ctx, cmd_name)
            return None if cmd is None else plain_help(cmd)
        module, attr, _help, extra = LAZY_GROUPS[cmd_name]
        if extra is not None and importlib.util.find_spec(_EXTRA_PROBE[extra]) is None:
            return _needs_extra(
                cmd_name, MissingExtra(extra, _EXTRA_PROBE[extra], what=f"databazaar {cmd_name}")
            )
        try:
            sub_app = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            error = missing_extra(exc, what=f"databazaar {cmd_name}")
            if error is None:
                raise
            return _needs_extra(cmd_name, error)
        group = typer.main.get_group(sub_app)
        group.name = cmd_name
        return plain_help(group)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in super().list_commands(ctx):
            cmd = super().get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(200)))
        rows += [(name, entry[2]) for name, entry in LAZY_GROUPS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DatabazaarError as exc:
            _fail(ctx, exc)
        except ModuleNotFoundError as exc:
            error = missing_extra(exc)
            if error is None:
                raise
            _fail(ctx, error)
        except Exception as exc:
            error = _store_error(exc)
            if error is None:
                raise
            _fail(ctx, error)


def _fail(ctx: Any, error: DatabazaarError) -> NoReturn:
    typer.echo(f"error: {error}", err=True)
    ctx.exit(error.exit_code)
    raise AssertionError("unreachable")  # ctx.exit raises


app = typer.Typer(
    cls=_Group,
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
