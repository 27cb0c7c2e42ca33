"""Steps the browser tests share: log in, sign up, read the flash messages.

Imported by the test modules of this folder (pytest puts it on ``sys.path``); every
account the browser tests create uses :data:`PASSWORD`.
"""

from __future__ import annotations

from typing import Any

PASSWORD = "correct-horse-9"


def log_in(page: Any, base: str, username: str) -> None:
    """Log in on ``/login`` and check the header names the account."""
    page.goto(base + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    assert page.get_by_test_id("whoami").inner_text() == username


def sign_up(page: Any, base: str, username: str, role: str) -> None:
    """Create a ``role`` account on ``/signup``; it is logged in afterwards."""
    page.goto(base + "/signup")
    page.get_by_label("sell data (seller)" if role == "seller" else "buy data (buyer)").check()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_load_state()
    assert page.get_by_test_id("whoami").inner_text() == username


def flash(page: Any) -> str:
    """The text of the page's flash messages."""
    return page.locator(".flashes").inner_text()
