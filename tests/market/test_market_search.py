"""Catalog search: full-text (FTS5 / tsvector), filters, semantic MiniLM and hybrid."""

from __future__ import annotations

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput
from databazaar.market import search
from databazaar.market.service import Market

CATALOG = [
    # slug, price, task, license, tags, description
    ("city-weather", 1200, "forecasting", "CC-BY-4.0", ["weather", "time-series"],
     "Hourly temperature, rainfall and wind readings from city weather stations."),
    ("movie-reviews", 800, "text-classification", "MIT", ["text", "sentiment"],
     "Short film reviews written by audiences, labelled positive or negative."),
    ("chest-xrays", 9900, "image-classification", "proprietary", ["medical", "images"],
     "Radiographs of lungs annotated by radiologists for pneumonia."),
    ("bird-songs", 450, "audio-classification", "CC-BY-4.0", ["audio", "animals"],
     "Field recordings of songbirds with species labels."),
]  # fmt: skip


@pytest.fixture
def catalog(market: Market, seller, other_seller, listed) -> Market:
    for i, (slug, price, task, lic, tags, desc) in enumerate(CATALOG):
        owner = seller if i % 2 == 0 else other_seller
        listed(owner, slug, price, task=task, license=lic, tags=tags, description=desc)
    # a draft and an unlisted product must never appear
    market.create_product(seller, "secret-draft", "Weather secrets")
    return market


def slugs(results) -> list[str]:
    return [h.slug for h in results.hits]


def test_browse_lists_products_on_sale(catalog: Market) -> None:
    res = catalog.search()
    assert res.mode == "browse" and res.total == 4
    assert sorted(slugs(res)) == sorted(c[0] for c in CATALOG)
    page = catalog.search(limit=2, offset=3)
    assert page.total == 4 and len(page.hits) == 1


def test_fulltext_matches_words_and_stems(catalog: Market) -> None:
    assert slugs(catalog.search("rainfall")) == ["city-weather"]
    assert slugs(catalog.search("reviewed films")) == ["movie-reviews"]  # stemming
    assert slugs(catalog.search("station")) == ["city-weather"]
    assert slugs(catalog.search("radiologists pneumonia")) == ["chest-xrays"]
    assert catalog.search("rainfall pneumonia").total == 0  # every word is required
    hit = catalog.search("songbirds").hits[0]
    assert hit.score is not None and hit.score > 0 and hit.price_minor == 450
    assert catalog.search("weather secrets").total == 0  # drafts are not indexed


def test_fulltext_treats_query_syntax_as_text(catalog: Market) -> None:
    """Search operators are words: every word must match, punctuation is dropped."""
    expected = {
        '"unbalanced': [],  # a stray quote is no syntax error
        "NEAR(a b)": [],  # no product has the words near, a and b
        "rain* OR 1=1": [],  # no prefix match ('rainfall' is not 'rain'), OR is a word
        "x'; DROP TABLE search_docs;--": [],
        "title:weather": [],  # no column filter: 'title' is a word no product has
        "-weather": ["city-weather"],  # no negation: it finds 'weather'
        "(((": [],  # no words: nothing is searched for, nothing matches
        "&|!:*": [],
    }
    got = {}
    for q in expected:
        res = catalog.search(q)
        assert res.mode == "fulltext" and res.total == len(res.hits), q
        got[q] = slugs(res)
    assert got == expected
    assert slugs(catalog.search("weather:")) == ["city-weather"]
    assert catalog.search().total == 4  # nothing was dropped


def test_filters(catalog: Market) -> None:
    assert slugs(catalog.search(task="forecasting")) == ["city-weather"]
    assert sorted(slugs(catalog.search(license="CC-BY-4.0"))) == ["bird-songs", "city-weather"]
    assert sorted(slugs(catalog.search(min_price=500, max_price=1200))) == [
        "city-weather",
        "movie-reviews",
    ]
    assert slugs(catalog.search(tags=["audio", "animals"])) == ["bird-songs"]
    assert catalog.search(tags=["audio", "text"]).total == 0
    assert slugs(catalog.search("species", license="CC-BY-4.0")) == ["bird-songs"]
    assert catalog.search("species", license="MIT").total == 0
    with pytest.raises(InvalidInput, match="min_price is greater"):
        catalog.search(min_price=10, max_price=5)
    with pytest.raises(InvalidInput, match="unknown search mode"):
        catalog.search("x", mode="psychic")
    with pytest.raises(InvalidInput, match="limit"):
        catalog.search(limit=0)
    with pytest.raises(InvalidInput, match="too long"):
        catalog.search("x" * 501)
    with pytest.raises(InvalidInput, match="invalid tag"):
        catalog.search(tags=["<b>"])


def test_new_version_replaces_the_indexed_card(catalog: Market, seller, make_csv) -> None:
    import io

    catalog.add_version(seller, "city-weather", io.BytesIO(make_csv(4)), "v2.csv",
                        {"license": "CC-BY-4.0", "task": "forecasting",
                         "description": "Snowfall depth measurements."})  # fmt: skip
    assert slugs(catalog.search("snowfall")) == []  # drafts stay out
    catalog.publish(seller, "city-weather", 2)
    assert slugs(catalog.search("snowfall")) == ["city-weather"]
    assert catalog.search("rainfall").total == 0
    assert catalog.search("snowfall").hits[0].version == 2


def test_rrf_and_cosine_helpers() -> None:
    fused = search.rrf_fuse([[1, 2, 3], [3, 1]])
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert max(fused, key=fused.get) == 1
    sims = search.cosine_scores(np.array([1.0, 0.0]), np.array([[2.0, 0.0], [0.0, 3.0], [0, 0]]))
    assert sims.tolist() == [1.0, 0.0, 0.0]
    assert search.fts5_match('a "b" c') == '"a" AND "b" AND "c"'


@pytest.fixture(scope="session")
def minilm():
    """The real MiniLM encoder from the offline package, loaded once per session."""
    from databazaar.core.embeddings import MiniLMEmbedder

    enc = MiniLMEmbedder()
    vec = enc.encode(["hello world"])
    assert vec.shape == (1, 384) and abs(float(np.linalg.norm(vec[0])) - 1.0) < 1e-5
    return enc


@pytest.mark.slow
def test_semantic_search_finds_meaning_not_words(catalog: Market, minilm) -> None:
    catalog._embedder = minilm
    # none of these words occur in the matching card
    res = catalog.search("lung disease diagnosis pictures", mode="semantic")
    assert res.mode == "semantic" and slugs(res)[0] == "chest-xrays"
    assert catalog.search("lung disease diagnosis pictures").total == 0  # full-text misses it
    assert slugs(catalog.search("climate sensor data", mode="semantic"))[0] == "city-weather"
    assert slugs(catalog.search("cinema opinions", mode="semantic"))[0] == "movie-reviews"
    # filters apply to semantic search too
    res = catalog.search("cinema opinions", mode="semantic", max_price=500)
    assert slugs(res) == ["bird-songs"]
    # hybrid fuses both rankings; an exact word match stays on top
    assert slugs(catalog.search("songbirds", mode="hybrid"))[0] == "bird-songs"
    # embeddings are stored once per card and reused
    from sqlalchemy import func, select

    from databazaar.market.models import CardEmbedding

    with catalog.db.read() as s:
        assert s.scalar(select(func.count()).select_from(CardEmbedding)) == 4
