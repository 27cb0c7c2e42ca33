"""Shared foundation: settings, the error hierarchy, table I/O and progress bars."""

from databazaar.core.config import Settings, get_settings
from databazaar.core.errors import (
    BudgetExceeded,
    Conflict,
    DatabazaarError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PaymentError,
    Unauthorized,
)

__all__ = [
    "BudgetExceeded",
    "Conflict",
    "DatabazaarError",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "PayloadTooLarge",
    "PaymentError",
    "Settings",
    "Unauthorized",
    "get_settings",
]
