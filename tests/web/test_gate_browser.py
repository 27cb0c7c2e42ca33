"""The listing gate in a real browser (Debian's chromium driven by Playwright).

A seller uploads and publishes a forum dump with planted requests for crimes: the page
says it is held.  A buyer cannot find it.  The admin opens the review queue, sees the
evidence (category, risk, the offending rows), approves it with a note, then tightens
the policy (Criminal Activities: block) through the form; both land in the audit
trail.  The buyer then sees the product with its "Screened" badge and the policy
version.  A second planted product is rejected from the queue and stays invisible.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from browser_steps import PASSWORD, flash, log_in

from databazaar.market.gate import ListingGate

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PLANTED = "Guide to laundering money through shell companies so the tax office never notices."


def _forum(n: int = 40) -> bytes:
    rows = [
        {"id": i, "text": PLANTED if i % 4 == 3 else f"Post {i}: my tomato plants need water."}
        for i in range(n)
    ]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def test_admin_walks_the_review_queue(
    live_server: Any, browser: Any, screenshot: Any, air_screener: Any
) -> None:
    taxonomy, screener = air_screener
    market = live_server.market
    market.gate = ListingGate(taxonomy, screener=screener, sample_rows=500)
    screener.screen(["load the sentence model before the pages wait on it"])
    base = live_server.url
    for name, role in (("gate-admin", "admin"), ("gate-seller", "seller"), ("gate-buyer", "buyer")):
        market.create_account(name, PASSWORD, role)

    # ---- the seller publishes the forum dump: held
    seller = browser.new_context(viewport=DESKTOP).new_page()
    seller.set_default_timeout(120_000)  # publishing screens the rows (slow on a busy CPU)
    log_in(seller, base, "gate-seller")
    seller.goto(base + "/sell/new")
    seller.get_by_label("Title").fill("Forum posts, unfiltered")
    seller.get_by_label("Web name (slug)").fill("forum-dump")
    seller.get_by_role("button", name="Create product").click()
    seller.get_by_label("Table file").set_input_files(
        files=[{"name": "forum.jsonl", "mimeType": "application/json", "buffer": _forum()}]
    )
    seller.get_by_label("Task").fill("text-generation")
    seller.get_by_label("License").fill("CC0-1.0")
    seller.get_by_label("Description").fill("Posts from a hobby forum, exported as they are.")
    seller.get_by_role("button", name="Upload as draft").click()
    seller.get_by_role("button", name="Publish version 1").click()
    assert "Version 1 is held for risk review" in flash(seller)
    assert seller.get_by_test_id("status-1").inner_text() == "held"
    assert "Criminal Activities (review)" in seller.get_by_test_id("screening-1").inner_text()
    # a second planted product, published through the library (the page's market)
    acc = market.account_by_name("gate-seller")
    market.create_product(acc, "forum-two", "More forum posts")
    market.add_version(
        acc, "forum-two", io.BytesIO(_forum(20)), "f.jsonl", {"license": "MIT", "task": "text"}
    )
    assert market.publish(acc, "forum-two", 1).status == "held"

    # ---- the buyer cannot find it
    buyer = browser.new_context(viewport=DESKTOP).new_page()
    log_in(buyer, base, "gate-buyer")
    assert buyer.goto(base + "/products/forum-dump").status == 404
    buyer.goto(base + "/catalog?q=forum")
    assert "Forum posts" not in buyer.locator("main").inner_text()

    # ---- the admin reviews: evidence, approve with a note
    admin = browser.new_context(viewport=DESKTOP).new_page()
    log_in(admin, base, "gate-admin")
    admin.get_by_role("link", name="Review").click()
    assert admin.url.endswith("/admin/review")
    assert admin.get_by_test_id("queue-count").inner_text() == "2"
    item = admin.locator("#review-forum-dump-1")
    evidence = item.get_by_test_id("evidence").inner_text()
    assert "Criminal Activities" in evidence and PLANTED[:40] in evidence
    assert "review" in evidence and "row 3" in evidence
    screenshot(admin, "review-queue")
    item.get_by_label("Note (approve)").fill("research corpus; buyers are vetted")
    item.get_by_role("button", name="Approve forum-dump v1").click()
    assert "forum-dump version 1 approved and published" in flash(admin)
    assert admin.get_by_test_id("queue-count").inner_text() == "1"
    admin.locator("#review-forum-two-1").get_by_role("button", name="Reject forum-two v1").click()
    assert "forum-two version 1 rejected" in flash(admin)
    assert admin.get_by_test_id("queue-empty").is_visible()

    # ---- the admin tightens the policy through the form: a new version, audited
    admin.get_by_label("16 Criminal Activities").select_option("block")
    admin.get_by_label("Why (kept in the audit trail)").fill("no crime for sale")
    admin.get_by_role("button", name="Save as a new policy version").click()
    assert "Policy version 2 is in force" in flash(admin)
    assert admin.get_by_test_id("policy-version").inner_text() == "v2"
    audit = admin.get_by_test_id("audit").inner_text()
    assert "gate-admin" in audit and "policy.set policy" in audit and "no crime for sale" in audit
    assert "review.approve forum-dump v1" in audit and "review.reject forum-two v1" in audit
    assert "rules 16 block" in audit  # the audit trail reads in words, not JSON
    admin.get_by_label("Risk threshold (0-1)").fill("2")
    admin.get_by_role("button", name="Save as a new policy version").click()
    assert "threshold must be between 0 and 1" in admin.locator("#form-error").inner_text()
    assert market.gate_policy().version == 2  # a bad form writes nothing
    screenshot(admin, "review-policy")

    # ---- the buyer sees the approved product with its badge; the rejected one stays away
    buyer.goto(base + "/products/forum-dump")
    badge = buyer.get_by_test_id("screened-badge").inner_text()
    assert badge == "Screened · policy v1 · approved after review"
    assert buyer.goto(base + "/products/forum-two").status == 404
    screenshot(buyer, "product-screened")
