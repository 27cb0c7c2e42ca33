"""Settlement: the ledger postings of every movement of money, and revenue splits.

A sale of price ``p`` with market fee ``f = p * fee_bps // 10000`` (rounded down, so a
seller never gets less than its share) books one balanced ledger transaction: the buyer
is debited ``p``, the fee account credited ``f`` and the seller side credited ``p - f``.
The seller side of a plain product goes to its seller; a *bundle* (a product assembled
from several sellers' rows, see :mod:`databazaar.market.economics`) is split by its
latest valuation (:func:`~databazaar.market.allocation.split_revenue`), each split
recorded in ``econ_splits`` with the valuation's id and sha256, which the credit memos
cite so the hash-chained ledger covers them.  An enriched derivative (see
:mod:`databazaar.market.derivatives`) passes its source's share on to the source
product's side, credited the same way.

The buyer's debit is checked and applied at once; the credits are *pending* (appended,
folded into the cached balances later: :mod:`databazaar.market.balances`), so
concurrent sales lock only their buyers' rows.  Deposits (from the funding account),
payouts (to it) and ledger verification live here too.  This module never imports
:mod:`databazaar.market.orders`; orders call it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from databazaar.core.errors import NotFound, PaymentError
from databazaar.market import balances, ledger, ledger_verify
from databazaar.market import validation as v
from databazaar.market.accounts import account_view
from databazaar.market.allocation import RULE, split_revenue
from databazaar.market.common import (
    FEE_ACCOUNT,
    FUNDING_ACCOUNT,
    MarketBase,
    system_account,
    system_account_id,
)
from databazaar.market.econ_models import (
    EconBundle,
    EconContributor,
    EconDerivative,
    EconSplit,
    EconValuation,
)
from databazaar.market.models import Account, Product, Role
from databazaar.market.schemas import DepositOut, LedgerReportOut


def market_fee(price_minor: int, fee_bps: int) -> int:
    """The market's fee on one item: ``price * fee_bps // 10000`` (rounded down)."""
    return price_minor * fee_bps // 10_000


@dataclass(frozen=True)
class SaleItem:
    """One item of an order as settlement sees it (``bundle``, ``derivative``: whether the
    product is a registered bundle or an enriched derivative; ``None`` when the caller
    did not look, so settlement does)."""

    product_id: int
    seller_id: int
    price_minor: int
    fee_minor: int
    bundle: bool | None = None
    derivative: bool | None = None


def latest_valuation(session: Session, product_id: int) -> EconValuation | None:
    """The newest contributor valuation of a product, if any."""
    return session.scalar(
        select(EconValuation)
        .where(EconValuation.product_id == product_id)
        .order_by(EconValuation.id.desc())
        .limit(1)
    )


def sale_postings(
    session: Session,
    order_id: int | None,
    items: Sequence[SaleItem],
    memo: str,
    txn_id: str,
) -> list[ledger.Posting]:
    """Ledger credits for the seller side of a sale, splitting bundles by valuation.

    Each item's net amount (price minus fee) goes to its seller, unless the product is
    a registered bundle with a valuation: then it is split by the latest valuation
    (:func:`~databazaar.market.allocation.split_revenue`), an ``econ_splits`` row
    records the valuation id, the shares and the rule, and each credit's memo cites the
    valuation id and sha256 prefix, so the hash-chained ledger covers it.  An enriched
    derivative (``econ_derivatives``) first passes ``source_share_bps`` of its net amount
    to its source product's side, credited the same way (the source's contributors by
    its valuation if it is a bundle, else its seller), with a memo naming the source;
    the rest goes to the derivative's seller.  Postings are grouped per (account, memo),
    sorted, zero amounts dropped.
    """
    credit: dict[tuple[int, str], int] = {}
    for item in items:
        net = item.price_minor - item.fee_minor
        if net <= 0:
            continue
        derived = None if item.derivative is False else session.get(EconDerivative, item.product_id)
        if derived is not None:
            source = session.get(Product, derived.source_product_id)
            assert source is not None  # a foreign key
            share = net * derived.source_share_bps // 10_000
            src_memo = (
                f"{memo}; derivative of {source.slug} "
                f"({derived.source_share_bps / 100:g}% to its contributors)"
            )[:200]
            _credit_product(
                session, credit, source.id, source.seller_id, share, src_memo, order_id, txn_id
            )
            net -= share
        _credit_product(
            session,
            credit,
            item.product_id,
            item.seller_id,
            net,
            memo,
            order_id,
            txn_id,
            item.bundle,
        )
    return [ledger.Posting(acc, amt, "sale", m) for (acc, m), amt in sorted(credit.items()) if amt]


def _credit_product(
    session: Session,
    credit: dict[tuple[int, str], int],
    product_id: int,
    seller_id: int,
    net: int,
    memo: str,
    order_id: int | None,
    txn_id: str,
    bundle: bool | None = None,
) -> None:
    """Add ``net`` for one product to ``credit``: to its seller, or split by valuation."""
    if net <= 0:
        return
    if bundle is None:
        bundle = session.get(EconBundle, product_id) is not None
    val = latest_valuation(session, product_id) if bundle else None
    if val is None:
        credit[(seller_id, memo)] = credit.get((seller_id, memo), 0) + net
        return
    contributors = {
        c.group_key: c.account_id
        for c in session.scalars(
            select(EconContributor).where(EconContributor.product_id == product_id)
        )
    }
    values = {
        str(g): float(x) for g, x in zip(val.record["groups"], val.record["values"], strict=True)
    }
    split = split_revenue(net, values, contributors)
    split_memo = f"{memo}; Shapley split by valuation {val.id} sha256 {val.digest[:16]}"[:200]
    for acc, amt in split.by_account().items():
        credit[(acc, split_memo)] = credit.get((acc, split_memo), 0) + amt
    session.add(
        EconSplit(
            txn_id=txn_id,
            order_id=order_id,
            product_id=product_id,
            valuation_id=val.id,
            total_minor=net,
            shares=[
                {
                    "group": s.group,
                    "account_id": s.account,
                    "value": s.value,
                    "weight": s.weight,
                    "amount_minor": s.amount_minor,
                }
                for s in split.shares
            ],
            rule=RULE if not split.equal_fallback else RULE + " [equal fallback used]",
        )
    )


def settle_sale(
    session: Session,
    buyer_id: int,
    order_id: int,
    items: Sequence[SaleItem],
    memo: str,
    txn_id: str,
    *,
    with_writes: Callable[[Connection], None] | None = None,
) -> None:
    """Book a sale on the ledger: buyer debit, seller side (split bundles), market fee.

    The buyer's debit is checked against its balance (:class:`PaymentError` when
    short); the credits are pending credits (:mod:`databazaar.market.balances`).
    ``with_writes``: the caller's statements (the order's rows) to send in the same
    round trip as the ledger's (see :func:`databazaar.market.ledger.post`); run alone
    when the sale moves no money.
    """
    total = sum(it.price_minor for it in items)
    if total <= 0:
        if with_writes is not None:
            with_writes(session.connection())
        return
    postings = [ledger.Posting(buyer_id, -total, "purchase", memo)]
    postings += sale_postings(session, order_id, items, memo, txn_id)
    fees = sum(it.fee_minor for it in items)
    if fees:
        postings.append(ledger.Posting(system_account_id(session, FEE_ACCOUNT), fees, "fee", memo))
    # the credits are deferred: concurrent sales do not queue on the fee or seller rows
    ledger.post(session, postings, txn_id=txn_id, defer_credits=True, with_writes=with_writes)


class Settlement(MarketBase):
    """Deposits, payouts and ledger checks of :class:`~databazaar.market.service.Market`."""

    def deposit(self, account_id: int, amount_minor: int, *, memo: str = "deposit") -> DepositOut:
        """Credit an account from the funding account (an admin action; ledger-booked)."""
        return self._transfer(account_id, amount_minor, memo, payout=False)

    def withdraw(self, account_id: int, amount_minor: int, *, memo: str = "payout") -> DepositOut:
        """Pay an account's money out to the funding account (refused beyond its balance)."""
        return self._transfer(account_id, amount_minor, memo, payout=True)

    def _transfer(
        self, account_id: int, amount_minor: int, memo: str, *, payout: bool
    ) -> DepositOut:
        amount = v.check_amount(amount_minor)
        memo = v.check_text(memo, "memo", max_len=200)
        with self.db.write() as s:
            acc = s.get(Account, account_id)
            if acc is None or acc.role == Role.system:
                raise NotFound(f"account {account_id} not found")
            if payout:
                ledger.lock_chain(s, account_id)  # the account's payouts queue here
                balances.fold(s, [account_id])
                have = balances.balance(s, account_id) or 0
                if have < amount:
                    raise PaymentError(f"balance {have} is less than the payout {amount}")
            funding = system_account(s, FUNDING_ACCOUNT)
            kind = "payout" if payout else "deposit"
            debit, credit = (acc.id, funding.id) if payout else (funding.id, acc.id)
            txn = ledger.post(
                s,
                [
                    ledger.Posting(debit, -amount, kind, memo),
                    ledger.Posting(credit, amount, kind, memo),
                ],
            )
            s.refresh(acc)
            return DepositOut(txn_id=txn, account=account_view(s, acc))

    def verify_ledger(self) -> LedgerReportOut:
        """Verify the hash chain, double entry and balances (:func:`ledger_verify.verify`)."""
        with self.db.snapshot() as s:
            report = ledger_verify.verify(s)
        return LedgerReportOut(**report.to_dict())  # type: ignore[arg-type]

    def ledger_report(self) -> ledger_verify.LedgerReport:
        """The full :class:`~databazaar.market.ledger_verify.LedgerReport`."""
        with self.db.snapshot() as s:
            return ledger_verify.verify(s)
