"""Account pages: ``/login``, ``/signup`` and ``/logout`` (password login into a cookie session).

The market throttles login attempts (it is given the client's address); a successful
login lands on ``next`` when that is a safe local path, else on the account's own page.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from databazaar.core.errors import DatabazaarError, InvalidInput, Unauthorized
from databazaar.server.deps import client_address
from databazaar.server.web.base import Csrf, MarketDep, Sess, WebRoute, landing, render
from databazaar.server.web.rendering import redirect, safe_next
from databazaar.server.web.session import SESSION_MAX_AGE

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/login")
def login_form(
    request: Request, sess: Sess, next: Annotated[str, Query(max_length=500)] = ""
) -> Response:
    return render(
        request, sess, "login.html", {"title": "Log in", "next": safe_next(next, ""), "form": {}}
    )


@router.post("/login")
def login(
    request: Request,
    sess: Sess,
    market: MarketDep,
    csrf_token: Csrf = "",
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    sess.check_csrf(csrf_token)
    try:
        token = market.login(
            username.strip(),
            password,
            ttl=timedelta(seconds=SESSION_MAX_AGE),
            client=client_address(request),
        )
    except DatabazaarError as exc:
        ctx = {"title": "Log in", "next": safe_next(next, ""), "form": {"username": username}}
        return render(request, sess, "login.html", {**ctx, "error": exc}, status=exc.http_status)
    sess.log_in(token.token, token.account)
    sess.flash(f"Welcome back, {token.account.username}.", "success")
    return redirect(sess, safe_next(next, landing(token.account)))


@router.get("/signup")
def signup_form(request: Request, sess: Sess) -> Response:
    return render(request, sess, "signup.html", {"title": "Create an account", "form": {}})


@router.post("/signup")
def signup(
    request: Request,
    sess: Sess,
    market: MarketDep,
    csrf_token: Csrf = "",
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    password_again: Annotated[str, Form(max_length=256)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    sess.check_csrf(csrf_token)
    form = {"username": username, "role": role}
    try:
        if role not in ("seller", "buyer"):
            raise InvalidInput("choose whether you want to sell or to buy data")
        if password != password_again:
            raise InvalidInput("the two passwords differ", hint="type the same password twice")
        market.create_account(username.strip(), password, role)
        token = market.login(
            username.strip(),
            password,
            ttl=timedelta(seconds=SESSION_MAX_AGE),
            client=client_address(request),
        )
    except DatabazaarError as exc:
        ctx = {"title": "Create an account", "form": form, "error": exc}
        return render(request, sess, "signup.html", ctx, status=exc.http_status)
    sess.log_in(token.token, token.account)
    sess.flash(f"Welcome, {token.account.username}: your {role} account is ready.", "success")
    return redirect(sess, landing(token.account))


@router.post("/logout")
def logout(request: Request, sess: Sess, market: MarketDep, csrf_token: Csrf = "") -> Response:
    sess.check_csrf(csrf_token)
    token = sess.log_out()
    if token is not None:
        try:
            market.revoke_token(token)
        except Unauthorized:
            pass  # already expired or revoked: the session is over either way
    sess.flash("You are logged out.", "info")
    return redirect(sess, "/")
