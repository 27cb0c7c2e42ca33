"""``databazaar enrich``: enrich a data set with a generation backend.

* ``dipt DATA.jsonl --backend SPEC -o OUT.jsonl`` -- SFT records (``prompt`` +
  ``completion`` or ``messages``) get perspective-taking rationales
  (:func:`databazaar.enrich.dipt.enrich_sft`);
* ``rationales PAIRS.jsonl --backend SPEC -o OUT.jsonl [--style general|detailed]`` --
  preference pairs get rationales (:func:`databazaar.enrich.rationales.generate_rationales`).

``SPEC`` is a model folder, an OpenAI-compatible base URL or ``rule-teacher`` (the
offline teacher of :mod:`databazaar.enrich.teacher`). Work is cached next to the output
(``.OUT.jsonl.cache.jsonl``, or ``--cache FILE``): when the backend fails, the command
stops with nothing written to ``OUT`` and running it again resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

enrich_app = typer.Typer(help="Enrich data: DiPT perspective rationales, pair rationales.")

Backend = Annotated[
    str,
    typer.Option("--backend", "-b", help="model folder, OpenAI-compatible URL or 'rule-teacher'"),
]
Out = Annotated[Path, typer.Option("--output", "-o", help="output JSON-lines file")]
Cache = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--cache", help="cache file (default: .OUT.cache.jsonl next to OUT)"),
]
ApiModel = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--api-model", help="served model name (URL backends)"),
]
MaxTokens = Annotated[int, typer.Option("--max-tokens", help="tokens per rationale")]
Batch = Annotated[int, typer.Option("--batch-size", help="records per cached batch")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def _enrich(
    label: str,
    data: Path,
    backend: str,
    api_model: str | None,
    output: Path,
    cache: Path | None,
    quiet: bool,
    run,
) -> list[dict]:  # type: ignore[no-untyped-def]
    """Read ``data``, run ``run(records, backend, cache=..., progress=...)``, write ``output``."""
    from databazaar.core.io import read_jsonl_records
    from databazaar.core.progress import progress_bar
    from databazaar.enrich.batches import default_cache_path
    from databazaar.enrich.teacher import open_enrich_backend
    from databazaar.lm.pairs import write_jsonl

    records = read_jsonl_records(data)
    gen = open_enrich_backend(backend, api_model)
    with progress_bar(label, len(records), quiet=quiet) as advance:
        out = run(records, gen, cache=cache or default_cache_path(output), progress=advance)
    write_jsonl(out, output)
    return out


@enrich_app.command("dipt")
def dipt_cmd(
    data: Annotated[Path, typer.Argument(help="SFT records (JSON lines)")],
    backend: Backend,
    output: Out,
    cache: Cache = None,
    api_model: ApiModel = None,
    max_tokens: MaxTokens = 96,
    batch_size: Batch = 16,
    quiet: Quiet = False,
) -> None:
    """Add perspective-taking rationales to SFT data (DiPT, arXiv 2409.06241)."""
    from functools import partial

    from databazaar.enrich.dipt import enrich_sft

    run = partial(enrich_sft, max_new_tokens=max_tokens, batch_size=batch_size)
    out = _enrich("dipt", data, backend, api_model, output, cache, quiet, run)
    bad = sum(not r["consistent"] for r in out)
    typer.echo(f"wrote {len(out)} enriched records to {output} ({bad} rationale(s) disagree)")


@enrich_app.command("rationales")
def rationales_cmd(
    pairs: Annotated[Path, typer.Argument(help="preference pairs (JSON lines)")],
    backend: Backend,
    output: Out,
    style: Annotated[str, typer.Option("--style", help="general or detailed")] = "general",
    cache: Cache = None,
    api_model: ApiModel = None,
    max_tokens: MaxTokens = 96,
    batch_size: Batch = 16,
    quiet: Quiet = False,
) -> None:
    """Add rationales to preference pairs (arXiv 2407.14477)."""
    from functools import partial

    from databazaar.enrich.rationales import generate_rationales

    run = partial(
        generate_rationales, style=style, max_new_tokens=max_tokens, batch_size=batch_size
    )
    out = _enrich("rationales", pairs, backend, api_model, output, cache, quiet, run)
    typer.echo(f"wrote {len(out)} pairs with {style} rationales to {output}")
