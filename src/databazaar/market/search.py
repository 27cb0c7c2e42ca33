"""Catalog search: full-text over cards and semantic search with sentence embeddings.

Full-text search uses the database's own engine:

* SQLite: an FTS5 table ``search_fts`` (Porter stemmer over unicode61 tokens) kept in
  sync with ``search_docs`` by triggers; ranking is BM25 (``-bm25()``, higher = better).
* PostgreSQL: a GIN index on ``to_tsvector('english', title || ' ' || body)`` queried
  with ``plainto_tsquery('english', q)`` and ranked by ``ts_rank``.

Both treat every word of the query as required (AND).  User text never becomes query
syntax: on SQLite the words are extracted and each is quoted as an FTS5 string; on
PostgreSQL ``plainto_tsquery`` ignores operators.

Semantic search embeds the query and every candidate card with a sentence encoder
(MiniLM, see :mod:`databazaar.core.embeddings`) and ranks by cosine similarity.
Hybrid search fuses the two rankings by reciprocal rank fusion,
``score(d) = sum_r 1 / (k + rank_r(d))`` with ``k = 60`` (Cormack et al., SIGIR 2009).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from databazaar.core.errors import InvalidInput

MAX_QUERY_CHARS = 500
MAX_QUERY_TERMS = 16
RRF_K = 60
_WORD_RE = re.compile(r"\w+", re.UNICODE)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

SEARCH_MODES = ("fulltext", "semantic", "hybrid")

_PG_VECTOR = "to_tsvector('english', title || ' ' || body)"


def check_query(q: str | None) -> str | None:
    """Strip a query; ``None`` when empty; :class:`InvalidInput` when too long."""
    if q is None:
        return None
    if not isinstance(q, str):
        raise InvalidInput("the search query must be text")
    q = q.strip()
    if not q:
        return None
    if _CONTROL_RE.search(q):
        raise InvalidInput(
            "the search query contains control characters", hint="search with plain text"
        )
    if len(q) > MAX_QUERY_CHARS:
        raise InvalidInput(f"search query too long ({len(q)} > {MAX_QUERY_CHARS} characters)")
    return q


def query_terms(q: str) -> list[str]:
    """The words of a query, lowercased, at most :data:`MAX_QUERY_TERMS`."""
    return [w.lower() for w in _WORD_RE.findall(q)][:MAX_QUERY_TERMS]


def fts5_match(q: str) -> str | None:
    """An FTS5 MATCH expression requiring every word (each quoted), or ``None``."""
    terms = query_terms(q)
    if not terms:
        return None
    return " AND ".join('"' + t.replace('"', '""') + '"' for t in terms)


def fulltext_scores(session: Session, q: str, *, limit: int = 1000) -> dict[int, float]:
    """``{version_id: score}`` of the published cards matching ``q`` (higher is better)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        match = fts5_match(q)
        if match is None:
            return {}
        rows = session.execute(
            text(
                "SELECT rowid, -bm25(search_fts) FROM search_fts "
                "WHERE search_fts MATCH :m ORDER BY bm25(search_fts) LIMIT :n"
            ),
            {"m": match, "n": limit},
        )
    elif dialect == "postgresql":
        rows = session.execute(
            text(
                f"SELECT version_id, ts_rank({_PG_VECTOR}, plainto_tsquery('english', :q)) "
                f"FROM search_docs WHERE {_PG_VECTOR} @@ plainto_tsquery('english', :q) "
                "ORDER BY 2 DESC LIMIT :n"
            ),
            {"q": q, "n": limit},
        )
    else:  # pragma: no cover - make_engine only builds the two
        raise InvalidInput(f"full-text search is not available on {dialect}")
    return {int(vid): float(score) for vid, score in rows}


def cosine_scores(query_vec: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of one query vector with each row of ``vectors``."""
    q = np.asarray(query_vec, dtype=np.float64).ravel()
    m = np.asarray(vectors, dtype=np.float64)
    if m.size == 0:
        return np.zeros(0)
    qn = np.linalg.norm(q)
    mn = np.linalg.norm(m, axis=1)
    denom = np.where(mn * qn > 0, mn * qn, 1.0)
    return (m @ q) / denom


def rrf_fuse(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion of several ranked id lists (best first)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


def card_text(
    title: str,
    description: str,
    task: str,
    license: str,
    tags: Iterable[str],
    columns: Iterable[str],
    provenance: str,
) -> str:
    """The text indexed and embedded for a card (title weighted by repetition in FTS)."""
    parts = [
        description,
        f"task: {task.replace('-', ' ')}",
        f"license: {license}",
        "tags: " + " ".join(t.replace("-", " ") for t in tags),
        "columns: " + " ".join(c.replace("_", " ") for c in columns),
        provenance,
    ]
    return "\n".join(p for p in parts if p)
