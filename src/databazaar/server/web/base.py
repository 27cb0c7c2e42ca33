"""Plumbing shared by the page modules: the session and market dependencies, rendering,
and the route class that turns market errors into HTML pages with their status codes."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Form, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from databazaar.core.errors import DatabazaarError, Forbidden, InvalidInput, Unauthorized
from databazaar.market.schemas import AccountOut
from databazaar.market.service import Market
from databazaar.server.web.rendering import redirect
from databazaar.server.web.session import WebSession


def _web(request: Request) -> Any:
    web = getattr(request.app.state, "web", None)
    if web is None:
        raise RuntimeError("the web pages are not mounted; call mount_web(app)")
    return web


def web_session(request: Request) -> WebSession:
    """The cookie session of this request (one object per request)."""
    sess = getattr(request.state, "web_session", None)
    if sess is None:
        sess = WebSession(request, _web(request).serializer)
        request.state.web_session = sess
    return sess


def get_market(request: Request) -> Market:
    return request.app.state.market


Sess = Annotated[WebSession, Depends(web_session)]
MarketDep = Annotated[Market, Depends(get_market)]
Csrf = Annotated[str, Form(max_length=200)]
SlugPath = Annotated[str, Path(min_length=1, max_length=64)]


def render(
    request: Request,
    sess: WebSession,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> Response:
    return _web(request).renderer.page(request, sess, template, context, status=status)


def error_page(request: Request, exc: DatabazaarError) -> Response:
    """The HTML page for a market error, with the error's status code."""
    sess = web_session(request)
    status = exc.http_status
    if isinstance(exc, Unauthorized) and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        sess.flash(exc.message, "error")
        return redirect(sess, "/login?next=" + quote(target, safe="/"))
    return render(
        request,
        sess,
        "error.html",
        {"title": _status_title(status), "status": status, "exc": exc},
        status=status,
    )


def _status_title(status: int) -> str:
    return {
        401: "Please log in",
        402: "Payment needed",
        403: "Not allowed",
        404: "Not found",
        405: "Not allowed",
        409: "Conflict",
        413: "Too large",
        422: "Check your input",
    }.get(status, "Something went wrong")


class WebRoute(APIRoute):
    """A route whose market errors and form-validation errors render as HTML pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except DatabazaarError as exc:
                return error_page(request, exc)
            except RequestValidationError as exc:
                fields = ", ".join(
                    str(err.get("loc", ("", "?"))[-1]) for err in list(exc.errors())[:5]
                )
                return error_page(
                    request,
                    InvalidInput(
                        f"the form has invalid or too long fields: {fields}",
                        hint="go back, correct them and send the form again",
                    ),
                )

        return wrapped


def require_role(account: AccountOut, *roles: str) -> None:
    if account.role != "admin" and account.role not in roles:
        raise Forbidden(
            f"this page is for {' or '.join(roles)} accounts",
            hint=f"you are logged in as a {account.role}",
        )


def require_user(sess: WebSession, *roles: str) -> AccountOut:
    """The logged-in account (401 otherwise), checked against ``roles`` when given."""
    account = sess.require_account()
    if roles:
        require_role(account, *roles)
    return account


def form_user(sess: WebSession, csrf_token: object, *roles: str) -> AccountOut:
    """For a form post: the CSRF token first, then :func:`require_user`."""
    sess.check_csrf(csrf_token)
    return require_user(sess, *roles)


def landing(account: AccountOut) -> str:
    return {"seller": "/sell", "buyer": "/purchases", "admin": "/admin"}.get(account.role, "/")
