"""Input checks at the edge of the market: names, free text, tags, file names.

Identifiers (usernames, slugs, tags, licenses, tasks, idempotency keys) follow strict
patterns, so SQL fragments, markup and path separators never reach the store in them.
Free text (titles, descriptions, provenance) may hold any printable characters except
HTML markup and control characters; every value is still passed to the database as a
bound parameter, never spliced into SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from databazaar.core.errors import InvalidInput
from databazaar.core.money import check_minor

USERNAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{2,31}$")
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,39}$")
LICENSE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]{0,63}$")
TASK_RE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_MARKUP_RE = re.compile(r"<\s*/?\s*[A-Za-z!?]|&#|javascript:", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

MAX_TAGS = 20


def _check(value: object, pattern: re.Pattern[str], what: str, hint: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInput(f"invalid {what}: {value!r}", hint=hint)
    return value


def check_username(value: object) -> str:
    """3-32 chars: lowercase letter first, then lowercase letters, digits, ``_ . -``."""
    return _check(
        value,
        USERNAME_RE,
        "username",
        "use 3-32 characters: a lowercase letter, then lowercase letters, digits, _ . -",
    )


def check_slug(value: object) -> str:
    """1-64 chars of lowercase letters, digits and inner hyphens."""
    return _check(value, SLUG_RE, "product slug", "use lowercase letters, digits and inner hyphens")


def check_tag(value: object) -> str:
    """1-40 chars: lowercase letters, digits, ``+ . -``."""
    return _check(value, TAG_RE, "tag", "tags use lowercase letters, digits and + . -")


def check_tags(values: Iterable[object]) -> list[str]:
    """Validate, de-duplicate and sort tags (at most :data:`MAX_TAGS`)."""
    tags = sorted({check_tag(v) for v in values})
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"too many tags ({len(tags)})", hint=f"use at most {MAX_TAGS}")
    return tags


def check_license(value: object) -> str:
    """An SPDX-like identifier such as ``CC-BY-4.0``, ``MIT`` or ``proprietary``."""
    return _check(value, LICENSE_RE, "license", "use an SPDX identifier such as CC-BY-4.0 or MIT")


def check_task(value: object) -> str:
    """A task name such as ``classification`` or ``text-generation``."""
    return _check(value, TASK_RE, "task", "use lowercase words joined by hyphens")


def check_idempotency_key(value: object) -> str:
    """1-128 chars of letters, digits and ``_ . : -``."""
    return _check(
        value, KEY_RE, "idempotency key", "use 1-128 letters, digits, or _ . : - (a UUID works)"
    )


def check_filename(value: object) -> str:
    """A plain file name: no directories, no ``..``, no leading dot or hidden path."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("missing file name", hint="upload a file named like data.csv")
    if "/" in value or "\\" in value or ".." in value or not FILENAME_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid file name {value!r}",
            hint="use a plain name of letters, digits, _ . - without directories or '..'",
        )
    return value


def check_text(value: object, what: str, *, max_len: int, required: bool = False) -> str:
    """Free text: no HTML markup, no control characters, at most ``max_len`` chars."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text")
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > max_len:
        raise InvalidInput(f"{what} is too long ({len(value)} > {max_len} characters)")
    if _CONTROL_RE.search(value):
        raise InvalidInput(f"{what} contains control characters", hint="remove them")
    if _MARKUP_RE.search(value):
        raise InvalidInput(
            f"{what} contains HTML markup or script", hint="write plain text without <tags>"
        )
    return value


def check_price(value: object) -> int:
    """A price in integer minor units, 0 to :data:`~databazaar.core.money.MAX_MINOR`."""
    return check_minor(value, "price")


def check_amount(value: object) -> int:
    """A positive amount in integer minor units, at most ``MAX_MINOR``."""
    return check_minor(value, "amount", allow_zero=False)
