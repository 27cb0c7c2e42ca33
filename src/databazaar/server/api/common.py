"""Shared parameter types and error-response documentation for the API routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Response
from pydantic import BaseModel, ConfigDict

MAX_ID = 2**53


class StrictIn(BaseModel):
    """Base of every JSON request body: strict types, so ``true``, ``"600"`` and
    ``500.0`` are refused for an integer field (422) instead of being coerced."""

    model_config = ConfigDict(strict=True)


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: str
    message: str
    hint: str | None = None


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error status codes."""
    return {code: {"model": ErrorOut} for code in codes}


Slug = Annotated[str, Path(min_length=1, max_length=64, description="product slug")]
VersionNumber = Annotated[int, Path(ge=1, le=1_000_000, description="version number")]


REPLAY_HEADER = "Idempotent-Replayed"
#: OpenAPI documentation of a purchase's 201 answer and its replay header.
REPLAY_DOC: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "the sale; a replay of an idempotency key answers the original "
        "sale with the same status",
        "headers": {
            REPLAY_HEADER: {
                "description": "``true`` when the idempotency key had been used before",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    }
}


def mark_replay(response: Response, replayed: bool) -> None:
    """Set ``Idempotent-Replayed: true`` on the answer to a replayed purchase."""
    if replayed:
        response.headers[REPLAY_HEADER] = "true"
