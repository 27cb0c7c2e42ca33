"""Preference pairs: ``{"prompt", "chosen", "rejected"}`` records, optionally with a rationale.

A pair says that, for the user turn ``prompt``, the assistant answer ``chosen`` is
preferred to ``rejected`` (the data of DPO, Rafailov et al., 2023, and ORPO, Hong et al.,
2024). A rationale-enriched pair (Just et al., 2024, arXiv 2407.14477) also carries
``rationale``: the text explaining why ``chosen`` is preferred. Files are JSON Lines.

:func:`check_pair` is the one validation of a pair: every field present and a non-empty
string, and ``chosen`` different from ``rejected`` (a pair of identical answers carries
no preference and makes the DPO margin identically zero). Errors name the record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from databazaar.core.errors import InvalidInput

PAIR_FIELDS = ("prompt", "chosen", "rejected")
RATIONALE_FIELD = "rationale"


def check_pair(record: Any, *, where: str = "pair", rationale: bool = False) -> dict[str, Any]:
    """One validated pair (extra fields kept); :class:`InvalidInput` naming ``where``.

    With ``rationale=True`` the record must also hold a non-empty ``rationale``.
    """
    if not isinstance(record, Mapping):
        raise InvalidInput(f"{where}: expected a JSON object with {', '.join(PAIR_FIELDS)}")
    need = PAIR_FIELDS + ((RATIONALE_FIELD,) if rationale else ())
    missing = [f for f in need if f not in record]
    if missing:
        raise InvalidInput(
            f"{where}: missing field(s) {', '.join(missing)}",
            hint="a pair is {'prompt': ..., 'chosen': ..., 'rejected': ...}"
            + (
                " with a 'rationale' (add one with `databazaar enrich rationales`)"
                if rationale
                else ""
            ),
        )
    for f in need:
        if not isinstance(record[f], str) or not record[f].strip():
            raise InvalidInput(f"{where}: {f!r} must be a non-empty string")
    if record["chosen"].strip() == record["rejected"].strip():
        raise InvalidInput(
            f"{where}: 'chosen' and 'rejected' are identical, so the pair states no preference",
            hint="drop the pair or fix one of its answers",
        )
    return dict(record)


def check_pairs(
    records: Sequence[Any], *, rationale: bool = False, source: str = "pairs"
) -> list[dict[str, Any]]:
    """Every record checked by :func:`check_pair` (errors name ``source`` and the record)."""
    if isinstance(records, str | bytes | Mapping) or not isinstance(records, Sequence):
        raise InvalidInput("pairs must be a list of {prompt, chosen, rejected} objects")
    if not records:
        raise InvalidInput(f"{source} holds no preference pairs")
    return [
        check_pair(r, where=f"{source}: record {i + 1}", rationale=rationale)
        for i, r in enumerate(records)
    ]


def read_pairs(path: str | Path, *, rationale: bool = False) -> list[dict[str, Any]]:
    """The validated pairs of a JSON-lines file (errors give the file and record number)."""
    from databazaar.core.io import read_jsonl_records

    return check_pairs(read_jsonl_records(path), rationale=rationale, source=str(path))


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write records as JSON lines all at once: a temporary file renamed into place.

    A failure while writing leaves ``path`` as it was (nothing half-written).
    """
    import json
    import os

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.parent / f".{p.name}.tmp-{os.getpid()}"
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(dict(r), ensure_ascii=False) + "\n")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def rationale_conversation(pair: Mapping[str, Any]) -> list[dict[str, str]]:
    """The conversation whose assistant turn is the pair's rationale, ``(x, y_w, y_l) -> r``.

    The rationale model of Just et al. (2024, §3) conditions on the prompt and both
    answers with the preferred one shown first; the policy's log-likelihood of the
    assistant turn is the rationale term of RDPO and RORPO.
    """
    question = (
        f"Given the prompt: {pair['prompt']}\n"
        f"Which answer is better and follows the prompt: the first, {pair['chosen']!r}, "
        f"or the second, {pair['rejected']!r}? Explain why."
    )
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": str(pair[RATIONALE_FIELD])},
    ]
