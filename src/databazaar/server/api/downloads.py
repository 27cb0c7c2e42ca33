"""File downloads through expiring signed links."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from databazaar.server.api.common import errors
from databazaar.server.deps import MarketDep, OptionalAccount

router = APIRouter(prefix="/downloads", tags=["downloads"])


@router.get(
    "/{token}",
    response_class=FileResponse,
    responses={200: {"description": "the file"}, **errors(401, 403, 404, 422)},
)
def download(
    token: Annotated[str, Path(min_length=1, max_length=500)],
    market: MarketDep,
    account: OptionalAccount,
) -> FileResponse:
    """Stream a file if the link is genuine, unexpired and its holder still has access.

    A link made with ``bind_to_account`` also needs the same account's bearer token.
    """
    path, filename, media_type = market.resolve_download(token, account=account)
    return FileResponse(path, filename=filename, media_type=media_type)
