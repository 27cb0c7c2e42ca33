"""``databazaar gate``: the listing gate's policy, review queue and audit trail.

Commands (mounted as ``databazaar gate``):

* ``policy``   show the screening policy (current, or ``--version N``);
* ``set``      write a new policy version (admins): ``--default``, ``--rule 3=block``
               (repeatable; ``--clear-rules`` drops the others), ``--threshold``,
               ``--min-rows``, ``--min-share``, ``--note``;
* ``queue``    the versions waiting for review, with the evidence;
* ``approve`` / ``reject SLUG VERSION``   decide a held version (admins, audited);
* ``audit``    the audit trail (who, when, old, new).

They use the store of the settings (``DATABASE_URL`` or ``DATABAZAAR_HOME``'s SQLite)
unless ``--url`` is given; admin commands log in with ``--user`` and ``--password`` (or
``DATABAZAAR_PASSWORD``).  Screening itself runs when a version is published with
``DATABAZAAR_GATE=minilm`` (or ``tfidf``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from databazaar.cli.econ import JsonOption, PasswordOption, UrlOption, UserOption, _echo_json

gate_app = typer.Typer(
    help="The listing gate: screening policy, review queue, audit.", no_args_is_help=True
)


@gate_app.callback()
def _gate() -> None:
    """The listing gate: screening policy, review queue, audit."""


@contextmanager
def _market(url: str | None) -> Iterator[Any]:
    from databazaar.core.config import get_settings
    from databazaar.market.db import Database, upgrade
    from databazaar.market.gate import ListingGate
    from databazaar.market.service import Market

    settings = get_settings()
    db = Database.from_url(url or settings.resolved_database_url)
    try:
        upgrade(db.engine)
        yield Market(
            db,
            settings.home,
            secret_key=settings.secret_key,
            gate=ListingGate.from_settings(settings),
        )
    finally:
        db.dispose()


def _admin(market: Any, user: str, password: str) -> Any:
    return market.authenticate(market.login(user, password).token)


def _print_policy(p: Any) -> None:
    typer.echo(
        f"policy v{p.version} (by {p.created_by or 'system'}, {p.created_at:%Y-%m-%d %H:%M} UTC)"
        f": default {p.default_action}, threshold {p.threshold:g}, min rows {p.min_rows}, "
        f"min share {p.min_share:g}"
    )
    for cid, action in p.rules.items():
        name = p.categories.get(cid)
        typer.echo(f"  {cid:>2}{' ' + name if name else ''}: {action}")
    if p.note:
        typer.echo(f"  note: {p.note}")


@gate_app.command("policy")
def policy_cmd(
    url: UrlOption = None,
    version: Annotated[int | None, typer.Option("--version", help="an earlier version")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the market's screening policy."""
    with _market(url) as market:
        policy = market.gate_policy(version)
    _echo_json(policy) if as_json else _print_policy(policy)


def _rules(specs: list[str]) -> dict[str, str]:
    from databazaar.core.errors import InvalidInput

    out = {}
    for spec in specs:
        cid, sep, action = spec.partition("=")
        if not sep or not cid.strip() or not action.strip():
            raise InvalidInput(f"a rule is ID=ACTION, got {spec!r}", hint="e.g. --rule 3=block")
        out[cid.strip()] = action.strip()
    return out


@gate_app.command("set")
def set_cmd(
    user: UserOption,
    password: PasswordOption,
    default: Annotated[str | None, typer.Option("--default", help="allow, review or block")] = None,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", help="ID=ACTION for a level-2 category")
    ] = None,
    clear_rules: Annotated[
        bool, typer.Option("--clear-rules", help="drop the rules not given with --rule")
    ] = False,
    threshold: Annotated[float | None, typer.Option("--threshold", help="risk, 0-1")] = None,
    min_rows: Annotated[int | None, typer.Option("--min-rows")] = None,
    min_share: Annotated[float | None, typer.Option("--min-share", help="0-1")] = None,
    note: Annotated[str, typer.Option("--note", help="why (kept in the audit)")] = "",
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a new policy version (admins); the change is audited."""
    with _market(url) as market:
        admin = _admin(market, user, password)
        rules = None
        if rule or clear_rules:
            rules = {} if clear_rules else dict(market.gate_policy().rules)
            rules.update(_rules(rule or []))
        policy = market.set_gate_policy(
            admin,
            default_action=default,
            rules=rules,
            threshold=threshold,
            min_rows=min_rows,
            min_share=min_share,
            note=note,
        )
    _echo_json(policy) if as_json else _print_policy(policy)


@gate_app.command("queue")
def queue_cmd(
    user: UserOption,
    password: PasswordOption,
    state: Annotated[str, typer.Option("--state", help="held, blocked, cleared, ...")] = "held",
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """The versions waiting for review (or in another --state), with the evidence."""
    with _market(url) as market:
        items = market.review_queue(_admin(market, user, password), state=state)
    if as_json:
        _echo_json([i.model_dump(mode="json") for i in items])
        return
    if not items:
        typer.echo(f"no versions are {state}")
    for item in items:
        scr = item.screening
        typer.echo(
            f"{item.slug} v{item.version} by {item.seller}: {scr.state} under policy "
            f"v{scr.policy_version}, max risk {scr.max_risk:.2f} ({scr.rows_screened} rows "
            "screened)"
        )
        for f in scr.findings or []:
            if f.fired:
                typer.echo(f"  {f.l2} {f.l2_name} [{f.action}]: {f.rows} rows")
                for sn in f.snippets[:2]:
                    typer.echo(f"    {sn.source} ({sn.risk:.2f}): {sn.text}")


def _review(
    slug: str, version: int, user: str, password: str, note: str, url: Any, ok: bool
) -> None:
    with _market(url) as market:
        ver = market.review(_admin(market, user, password), slug, version, approve=ok, note=note)
    assert ver.screening is not None
    typer.echo(f"{slug} v{version}: {ver.screening.state} (status {ver.status})")


@gate_app.command("approve")
def approve_cmd(
    slug: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument()],
    user: UserOption,
    password: PasswordOption,
    note: Annotated[str, typer.Option("--note")] = "",
    url: UrlOption = None,
) -> None:
    """Approve a held version: it is published (audited)."""
    _review(slug, version, user, password, note, url, True)


@gate_app.command("reject")
def reject_cmd(
    slug: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument()],
    user: UserOption,
    password: PasswordOption,
    note: Annotated[str, typer.Option("--note")] = "",
    url: UrlOption = None,
) -> None:
    """Reject a held version: it is never sold (audited)."""
    _review(slug, version, user, password, note, url, False)


@gate_app.command("audit")
def audit_cmd(
    user: UserOption,
    password: PasswordOption,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """The audit trail of policy edits and reviews, newest first."""
    with _market(url) as market:
        rows = market.gate_audit(_admin(market, user, password), limit=limit)
    if as_json:
        _echo_json([r.model_dump(mode="json") for r in rows])
        return
    for r in rows:
        typer.echo(
            f"{r.at:%Y-%m-%d %H:%M:%S} {r.actor or 'system'} {r.action} {r.subject} "
            f"(policy v{r.policy_version}): {r.old} -> {r.new}" + (f" [{r.note}]" if r.note else "")
        )
