"""``databazaar econ``: market economics from the command line.

Commands (the top-level CLI mounts :data:`econ_app` as ``econ``):

* ``rank``      rank products on sale by KNN-Shapley value for your validation CSV;
* ``quote``     price a request under a product's mechanism;
* ``buy``       buy under the product's mechanism (posted, query, model, value);
* ``pricing``   choose a product's mechanism (seller);
* ``split``     split revenue among contributor groups of any table by Data Shapley
                (works on files alone, no market needed);
* ``dp-query``  release one differentially private statistic (spends budget).

Market commands use the store of the settings (``DATABASE_URL`` or the SQLite file in
``DATABAZAAR_HOME``) unless ``--url`` is given; account commands log in with
``--user`` and ``--password`` (or ``DATABAZAAR_PASSWORD``).  Only ``typer`` is
imported at module level.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from databazaar.core.cli_options import JsonOption, PasswordOption, UrlOption, UserOption

econ_app = typer.Typer(
    help="Market economics: value search, pricing, revenue splits, DP.", no_args_is_help=True
)


@econ_app.callback()
def _econ() -> None:
    """Market economics: value search, pricing, revenue splits, DP."""


def _loads(text: str | None, what: str) -> dict[str, Any]:
    from databazaar.core.errors import InvalidInput

    if not text:
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{what} is not valid JSON: {exc.msg}", hint="quote it: '{\"variance\": 0.1}'"
        ) from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return obj


@contextmanager
def _economics(url: str | None) -> Iterator[Any]:
    from databazaar.core.config import get_settings
    from databazaar.market.db import Database, upgrade
    from databazaar.market.economics import Economics
    from databazaar.market.service import Market

    settings = get_settings()
    db = Database.from_url(url or settings.resolved_database_url)
    try:
        upgrade(db.engine)
        market = Market(
            db, settings.home, secret_key=settings.secret_key, fee_bps=settings.market_fee_bps
        )
        yield Economics(market)
    finally:
        db.dispose()


def _login(econ: Any, user: str, password: str) -> Any:
    token = econ.market.login(user, password)
    return econ.market.authenticate(token.token)


def _echo_json(obj: Any) -> None:
    if hasattr(obj, "model_dump"):  # a typed view of databazaar.market.schemas
        obj = obj.model_dump(mode="json", exclude_unset=True)
    typer.echo(json.dumps(obj, indent=2, default=str))


@econ_app.command("rank")
def rank_cmd(
    validation: Annotated[Path, typer.Argument(help="your validation table (CSV, Parquet, JSONL)")],
    label: Annotated[str, typer.Option("--label", help="the label column")],
    slug: Annotated[
        list[str] | None,
        typer.Option("--slug", help="candidate product (repeat); default: the catalog"),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="only catalog products of this task")
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="KNN neighbours")] = 5,
    svg: Annotated[
        Path | None, typer.Option("--svg", help="write the point-removal curves here")
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rank products on sale by their KNN-Shapley value for your task."""
    from databazaar.core.io import read_table

    val = read_table(validation)
    with _economics(url) as econ:
        report, skipped = econ.rank(
            val, label, slug or None, task=task, k=k, curves=svg is not None
        )
    if svg is not None:
        svg.write_text(report.removal_curve_svg())
    if as_json:
        _echo_json({**report.to_dict(), "skipped": skipped})
        return
    typer.echo(report.to_markdown())
    for s in skipped:
        typer.echo(f"skipped {s['slug']}: {s['reason']}")
    if svg is not None:
        typer.echo(f"wrote {svg}")


@econ_app.command("quote")
def quote_cmd(
    slug: Annotated[str, typer.Argument(help="product slug")],
    request: Annotated[
        str | None, typer.Option("--request", help="the mechanism's request as JSON")
    ] = None,
    url: UrlOption = None,
) -> None:
    """Price a request under the product's mechanism."""
    with _economics(url) as econ:
        _echo_json(econ.quote(slug, _loads(request, "--request")).to_dict())


@econ_app.command("pricing")
def pricing_cmd(
    slug: Annotated[str, typer.Argument(help="product slug")],
    mechanism: Annotated[str, typer.Argument(help="posted, query, model, auction or value")],
    config: Annotated[str, typer.Argument(help="the mechanism's configuration as JSON")],
    user: UserOption,
    password: PasswordOption,
    url: UrlOption = None,
) -> None:
    """Choose a product's pricing mechanism (its seller)."""
    with _economics(url) as econ:
        acc = _login(econ, user, password)
        _echo_json(econ.set_pricing(acc, slug, mechanism, _loads(config, "config")))


@econ_app.command("buy")
def buy_cmd(
    slug: Annotated[str, typer.Argument(help="product slug")],
    key: Annotated[str, typer.Option("--key", help="idempotency key (reuse it to retry safely)")],
    user: UserOption,
    password: PasswordOption,
    request: Annotated[
        str | None, typer.Option("--request", help="the mechanism's request as JSON")
    ] = None,
    validation: Annotated[
        Path | None,
        typer.Option("--validation", help="validation table for value-based pricing"),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Buy under the product's mechanism; prints the sale (answer rows, model, splits)."""
    req = _loads(request, "--request")
    if validation is not None:
        from databazaar.core.io import read_table

        req["validation"] = json.loads(read_table(validation).to_json(orient="records"))
    with _economics(url) as econ:
        acc = _login(econ, user, password)
        _echo_json(econ.buy(acc, slug, req, key))


@econ_app.command("split")
def split_cmd(
    data: Annotated[Path, typer.Argument(help="the bundled table")],
    validation: Annotated[Path, typer.Argument(help="the validation table of the task")],
    revenue: Annotated[int, typer.Option("--revenue", help="revenue to split, in minor units")],
    group: Annotated[str, typer.Option("--group", help="column naming each row's contributor")],
    label: Annotated[str, typer.Option("--label", help="the label column")],
    method: Annotated[str, typer.Option("--method", help="knn, exact, tmc or ads")] = "knn",
    order: Annotated[
        str | None, typer.Option("--order", help="ads: groups earliest first, comma-separated")
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100)] = 5,
    seed: Annotated[int, typer.Option("--seed", help="random seed (tmc)")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Split revenue among contributor groups by Data Shapley (no market needed)."""
    from databazaar.core.errors import InvalidInput
    from databazaar.core.io import read_table
    from databazaar.market.allocation import contribution_values, split_revenue
    from databazaar.market.value_search import Featurizer

    frame, val = read_table(data), read_table(validation)
    for col in (group, label):
        if col not in frame.columns:
            raise InvalidInput(f"{data} has no column {col!r}")
    frame = frame.dropna(subset=[group, label])
    feat = Featurizer(label, [group]).fit(val, [frame])
    res = contribution_values(
        feat.transform(frame),
        frame[label].astype(str).to_numpy(),
        frame[group].astype(str).to_numpy(),
        feat.transform(val),
        val[label].astype(str).to_numpy(),
        method=method,
        k=k,
        order=order.split(",") if order else None,
        random_state=seed,
    )
    split = split_revenue(revenue, res)
    if as_json:
        _echo_json(split.to_dict())
        return
    typer.echo(f"method {res.method}; rule: {split.rule}")
    typer.echo("| group | value | share | amount (minor units) |")
    typer.echo("|---|---|---|---|")
    for s in split.shares:
        typer.echo(f"| {s.group} | {s.value:.6f} | {s.weight:.2%} | {s.amount_minor} |")
    typer.echo(f"total {sum(s.amount_minor for s in split.shares)} = revenue {revenue}")


@econ_app.command("dp-query")
def dp_query_cmd(
    slug: Annotated[str, typer.Argument(help="product slug")],
    statistic: Annotated[str, typer.Argument(help="count, sum, mean or histogram")],
    epsilon: Annotated[float, typer.Option("--epsilon", help="privacy budget this release spends")],
    user: UserOption,
    password: PasswordOption,
    column: Annotated[
        str | None, typer.Option("--column", help="the column (count: rows if omitted)")
    ] = None,
    url: UrlOption = None,
) -> None:
    """Release one differentially private statistic of a product."""
    with _economics(url) as econ:
        acc = _login(econ, user, password)
        _echo_json(econ.dp_query(acc, slug, statistic, column, epsilon))


__all__ = ["econ_app"]
