"""File downloads through expiring signed links."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from databazaar.server.api.common import errors
from databazaar.server.deps import MarketDep

router = APIRouter(prefix="/downloads", tags=["downloads"])


@router.get(
    "/{token}",
    response_class=FileResponse,
    responses={200: {"description": "the file"}, **errors(403, 404, 422)},
)
def download(
    token: Annotated[str, Path(min_length=1, max_length=500)], market: MarketDep
) -> FileResponse:
    """Stream a file if the link is genuine, unexpired and its holder still has access."""
    path, filename, media_type = market.resolve_download(token)
    return FileResponse(path, filename=filename, media_type=media_type)
