"""Acceptance: screening a listing of 10,000 rows on publish takes < 30 s on 2 cores.

The gate screens the card and a seeded sample of rows (``gate_sample_rows``, 1,000 by
default; the issue asks for "a sample of its text rows"), so the time is that of
reading the file, drawing the sample, embedding about 1,000 texts with MiniLM and
storing the verdict.  The screener is trained once per market and cached (the session
fixture), and the sentence model is loaded before timing, as a serving process has it.

The machine the suite runs on is shared (other jobs inflate wall time), so the test
measures both the wall time and the CPU time of the process (all its threads): the claim
holds when either is under 30 s.  CPU time under 30 s is a conservative bound for 2
dedicated cores: it is what one dedicated core would need.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from databazaar.market.db import Database, upgrade
from databazaar.market.gate import DEFAULT_SAMPLE_ROWS, ListingGate
from databazaar.market.service import Market

pytestmark = pytest.mark.slow

SUBJECTS = ("The kettle", "My bike", "This laptop", "The hotel room", "Our new sofa", "The tram")
VERBS = ("was", "felt", "looked", "seemed", "turned out")
ADJ = ("great", "noisy", "cheap", "sturdy", "slow", "lovely", "awful", "fine", "clean", "cold")


def big_listing(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        s, v, a, b = (
            SUBJECTS[rng.integers(6)], VERBS[rng.integers(5)], ADJ[rng.integers(10)],
            ADJ[rng.integers(10)],
        )  # fmt: skip
        rows.append({"id": i, "text": f"Review {i}: {s} {v} {a} and {b} after {i % 97} days."})
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def test_screening_a_10000_row_listing_takes_under_30_seconds(
    tmp_path: Path, air_screener: Any
) -> None:
    import torch

    torch.set_num_threads(2)
    taxonomy, screener = air_screener
    screener.screen(["warm the sentence model"])
    db = Database.from_url(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(db.engine)
    market = Market(db, tmp_path, gate=ListingGate(taxonomy, screener=screener))
    seller = market.create_account("big-seller", "correct-horse-9", "seller")
    market.create_product(seller, "big-reviews", "Product reviews")
    data = big_listing(10_000, seed=7)
    card = {"license": "MIT", "task": "text-classification", "description": "Short reviews."}
    market.add_version(seller, "big-reviews", io.BytesIO(data), "r.jsonl", card)
    start, cpu = time.perf_counter(), time.process_time()
    ver = market.publish(seller, "big-reviews", 1)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    db.dispose()
    scr = ver.screening
    assert scr is not None and scr.rows_total == 10_000
    assert scr.rows_screened == DEFAULT_SAMPLE_ROWS == 1000
    import os

    load = os.getloadavg()[0]
    print(f"publish with screening of a 10,000-row listing: {took:.1f} s wall, {cpu:.1f} s CPU")
    print(f"load average {load:.1f}; decision {scr.state}, max risk {scr.max_risk}")
    assert min(took, cpu) < 30.0, f"screening took {took:.1f} s wall, {cpu:.1f} s CPU"
    assert ver.status == "published" and scr.state == "cleared", scr
