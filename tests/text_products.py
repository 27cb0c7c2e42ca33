"""Three listed text products on distinct topics, for the mixture-plan tests (CLI and page).

``seed_text_products`` lists ``recipes``, ``football`` and ``weather`` (20 JSONL rows of
120 topic words each, prices 10.00 / 15.00 / 20.00 USD) for ``seller`` and gives
``buyer`` 100.00 USD.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

WORDS = {
    "recipes": "flour sugar butter oven bake stir salt egg milk pan heat cup whisk".split(),
    "football": "goal match team player score league coach pitch ball win referee".split(),
    "weather": "rain cloud sun wind storm forecast cold warm snow humid front mist".split(),
}


def seed_text_products(market: Any, seller: Any, buyer: Any) -> None:
    rng = np.random.default_rng(0)
    for price, (slug, words) in zip((1000, 1500, 2000), WORDS.items(), strict=True):
        rows = [{"text": " ".join(rng.choice(words, 120))} for _ in range(20)]
        data = ("\n".join(json.dumps(r) for r in rows) + "\n").encode()
        market.create_product(seller, slug, slug)
        market.add_version(
            seller, slug, io.BytesIO(data), f"{slug}.jsonl", {"license": "MIT", "task": "lm"}
        )
        market.publish(seller, slug, 1)
        market.set_listing(seller, slug, price)
    market.deposit(buyer.id, 10_000)
