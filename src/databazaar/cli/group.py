"""The root command group of ``databazaar``: command groups loaded only when used, plain
help, and every expected failure as one line (see :class:`RootGroup`)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, NoReturn

import typer
import typer.core
import typer.main

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
        "Optimise data-mixture weights (DDO, AutoScale, DoReMi, RegMix, Data Mixing Laws) "
        "and train with them.",
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
    # an HTTP backend or the offline rule teacher needs no lm extra; a local model does
    "enrich": (
        "databazaar.enrich.cli",
        "enrich_app",
        "Enrich data: DiPT perspective rationales, pair rationales.",
        None,
    ),
    "align": (
        "databazaar.alignment.cli",
        "align_app",
        "Preference learning (DPO, ORPO, RDPO, RORPO) and multimodal instruction tuning (MLAN).",
        "lm",
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


class RootGroup(typer.core.TyperGroup):
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
