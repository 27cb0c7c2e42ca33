"""Catalog search and browsing (public)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from databazaar.core.money import MAX_MINOR
from databazaar.market.schemas import SearchResults
from databazaar.server.api.common import errors
from databazaar.server.deps import MarketDep

router = APIRouter(tags=["catalog"])


@router.get("/catalog", response_model=SearchResults, responses=errors(422))
def catalog(
    market: MarketDep,
    q: Annotated[str | None, Query(max_length=500, description="search text")] = None,
    mode: Literal["fulltext", "semantic", "hybrid"] = "fulltext",
    task: Annotated[str | None, Query(max_length=64)] = None,
    license: Annotated[str | None, Query(max_length=64)] = None,
    min_price: Annotated[int | None, Query(ge=0, le=MAX_MINOR)] = None,
    max_price: Annotated[int | None, Query(ge=0, le=MAX_MINOR)] = None,
    tag: Annotated[list[str] | None, Query(max_length=20, description="all must match")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> SearchResults:
    """Search products on sale: full-text, semantic (MiniLM) or hybrid, with filters."""
    return market.search(
        q,
        mode=mode,
        task=task,
        license=license,
        min_price=min_price,
        max_price=max_price,
        tags=tag or [],
        limit=limit,
        offset=offset,
    )
