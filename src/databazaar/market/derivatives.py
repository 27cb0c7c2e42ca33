"""Enriched derivatives: a seller turns a product into a new, enriched one.

:meth:`Derivatives.create_derivative` reads the latest published version of a source
product (one the seller owns or bought), enriches its rows with a generation backend
(:mod:`databazaar.enrich`) and lists the result as a new product:

* ``dipt`` -- SFT rows (``prompt`` + ``completion``, or ``messages``) get
  perspective-taking rationales (:func:`databazaar.enrich.dipt.enrich_sft`);
* ``rationales`` -- preference pairs (``prompt``, ``chosen``, ``rejected``) get
  rationales in the ``general`` or ``detailed`` style
  (:func:`databazaar.enrich.rationales.generate_rationales`).

The new product's card states its provenance (source product and version, method,
generator model, parameters, the source's revenue share), and the same facts are stored
in ``econ_derivatives``. Its sales go through the one booking path
(:func:`databazaar.market.orders.book_order`); the settlement passes
``source_share_bps`` of each sale's seller side to the source product's contributors
(:func:`databazaar.market.settlement.sale_postings`).

Everything that can be checked is checked before anything is written (the seller's
access, the new slug, price, share, parameters, the source's columns); the enrichment
runs before the product is created, so a backend failure writes nothing; a failure
while the product is being stored removes it again.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from databazaar.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from databazaar.market import validation as v
from databazaar.market.common import EconomicsBase, latest_published, load_product
from databazaar.market.econ_models import EconDerivative
from databazaar.market.models import Grant, Product, ProductVersion, Role
from databazaar.market.schemas import AccountOut, DerivativeOut

if TYPE_CHECKING:
    from databazaar.lm.generate import GenerationBackend

log = logging.getLogger(__name__)

METHODS = {"dipt": "DiPT perspective rationales", "rationales": "preference-pair rationales"}
DEFAULT_SOURCE_SHARE_BPS = 5000
_PARAMS = {"dipt": {"max_new_tokens"}, "rationales": {"max_new_tokens", "style"}}


def _check_params(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict(params or {})
    unknown = sorted(set(params) - _PARAMS[method])
    if unknown:
        raise InvalidInput(
            f"unknown parameter(s) for {method}: {', '.join(unknown)}",
            hint=f"allowed: {', '.join(sorted(_PARAMS[method]))}",
        )
    out: dict[str, Any] = {"max_new_tokens": params.get("max_new_tokens", 96)}
    mnt = out["max_new_tokens"]
    if isinstance(mnt, bool) or not isinstance(mnt, int) or not 8 <= mnt <= 512:
        raise InvalidInput("max_new_tokens must be an integer between 8 and 512")
    if method == "rationales":
        from databazaar.enrich.rationales import STYLES

        out["style"] = params.get("style", "general")
        if out["style"] not in STYLES:
            raise InvalidInput(f"style must be one of {', '.join(STYLES)}")
    return out


def _records(frame: Any, method: str) -> list[dict[str, Any]]:
    cols = set(frame.columns)
    need = {
        "dipt": [("prompt", "completion"), ("messages",)],
        "rationales": [("prompt", "chosen", "rejected")],
    }
    for option in need[method]:
        if set(option) <= cols:
            recs = frame.to_dict(orient="records")
            if option == ("messages",):
                return [{"messages": r["messages"]} for r in recs]
            # a table reader reads "5" as a number: answers are text here
            return [{c: _text(r[c]) for c in option} for r in recs]
    want = " or ".join("+".join(o) for o in need[method])
    raise InvalidInput(
        f"the source product has no columns for {method}: it needs {want}",
        hint=f"its columns are {', '.join(map(str, frame.columns))}",
    )


def _text(value: Any) -> Any:
    """A cell as text (numbers the reader inferred become their digits); missing stays None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def provenance_text(
    source_slug: str,
    source_title: str,
    version: int,
    method: str,
    generator: str,
    params: Mapping[str, Any],
    share_bps: int,
) -> str:
    """The provenance line of a derivative's card."""
    return (
        f"Enriched derivative of product '{source_slug}' ({source_title}), version {version}. "
        f"Method: {method} ({METHODS[method]}). Generator model: {generator}. "
        f"Parameters: {json.dumps(dict(params), sort_keys=True)}. "
        f"{share_bps / 100:g}% of the seller's revenue from each sale goes to the source "
        "product's contributors."
    )


class Derivatives(EconomicsBase):
    """Enriched derivatives of :class:`~databazaar.market.economics.Economics`."""

    def create_derivative(
        self,
        account: AccountOut,
        source_slug: str,
        slug: str,
        *,
        method: str,
        backend: GenerationBackend,
        price_minor: int,
        title: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        source_share_bps: int = DEFAULT_SOURCE_SHARE_BPS,
    ) -> DerivativeOut:
        """Enrich ``source_slug``'s latest published rows and list them as ``slug``."""
        if Role(account.role) != Role.seller:
            raise Forbidden("only sellers create derivatives")
        if method not in METHODS:
            raise InvalidInput(
                f"unknown enrichment method {method!r}", hint=f"use {' or '.join(METHODS)}"
            )
        params = _check_params(method, parameters)
        slug = v.check_slug(slug)
        price = v.check_price(price_minor)
        if (
            isinstance(source_share_bps, bool)
            or not isinstance(source_share_bps, int)
            or not 0 <= source_share_bps <= 10_000
        ):
            raise InvalidInput("source_share_bps must be an integer between 0 and 10000")
        with self.market.db.read() as s:
            src = load_product(s, v.check_slug(source_slug), eager=False)
            ver = latest_published(s, src)
            owns = src.seller_id == account.id
            bought = s.scalar(
                select(Grant.id).where(Grant.account_id == account.id, Grant.product_id == src.id)
            )
            if not owns and bought is None:
                raise Forbidden(
                    f"you neither own nor bought {src.slug!r}",
                    hint="buy the product before deriving from it",
                )
            if s.scalar(select(Product.id).where(Product.slug == slug)) is not None:
                raise Conflict(f"product slug {slug!r} is taken", hint="choose another slug")
            src_id, src_title, ver_id, ver_no = src.id, src.title, ver.id, ver.number
            license_, task = ver.license, ver.task
            src_slug = src.slug
        records = _records(self._read_version(ver), method)
        generator = getattr(backend, "name", type(backend).__name__)
        # enrich before writing anything: a failing backend leaves the store unchanged
        if method == "dipt":
            from databazaar.enrich.dipt import enrich_sft

            rows = enrich_sft(records, backend, max_new_tokens=params["max_new_tokens"])
        else:
            from databazaar.enrich.rationales import generate_rationales

            rows = generate_rationales(
                records, backend, style=params["style"], max_new_tokens=params["max_new_tokens"]
            )
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        prov = provenance_text(
            src_slug, src_title, ver_no, method, generator, params, source_share_bps
        )
        card = {
            "license": license_,
            "task": task,
            "description": f"{src_title}, enriched with {METHODS[method]}.",
            "provenance": prov,
            "tags": ["enriched", method],
        }
        self.market.create_product(account, slug, title or f"{src_title} ({method})")
        with self.market.db.read() as s:
            new_id = s.scalar(select(Product.id).where(Product.slug == slug))
        try:
            new = self.market.add_version(account, slug, io.BytesIO(body), f"{slug}.jsonl", card)
            self.market.publish(account, slug, new.number)
            self.market.set_listing(account, slug, price)
            with self.market.db.write() as s:
                s.add(
                    EconDerivative(
                        product_id=new_id,
                        source_product_id=src_id,
                        source_version_id=ver_id,
                        method=method,
                        generator=generator[:200],
                        parameters=params,
                        source_share_bps=source_share_bps,
                    )
                )
        except Exception:
            self._remove(new_id)
            raise
        return self.derivative(slug)

    def _remove(self, product_id: int) -> None:
        """Delete a half-made derivative product (its versions, listing, row)."""
        try:
            with self.market.db.write() as s:
                # versions, tags, listing, screenings and search rows go by ON DELETE CASCADE
                s.execute(delete(EconDerivative).where(EconDerivative.product_id == product_id))
                s.execute(delete(Product).where(Product.id == product_id))
        except Exception:  # the original error matters more; leave a trace of this one
            log.exception("could not remove the half-made derivative product %s", product_id)

    def derivative(self, slug: str) -> DerivativeOut:
        """A derivative's provenance (public once it is listed)."""
        with self.market.db.read() as s:
            prod = load_product(s, v.check_slug(slug), eager=False)
            d = s.get(EconDerivative, prod.id)
            if d is None:
                raise NotFound(f"product {slug!r} is not an enriched derivative")
            src = s.get(Product, d.source_product_id)
            sver = s.get(ProductVersion, d.source_version_id)
            ver = latest_published(s, prod)
            assert src is not None and sver is not None
            return DerivativeOut(
                slug=prod.slug,
                source_slug=src.slug,
                source_version=sver.number,
                method=d.method,
                generator=d.generator,
                parameters=d.parameters,
                source_share_bps=d.source_share_bps,
                rows=int(ver.n_rows),
                provenance=ver.provenance,
                price_minor=prod.listing.price_minor if prod.listing is not None else None,
            )
