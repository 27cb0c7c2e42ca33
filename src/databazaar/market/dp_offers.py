"""Differentially private statistics offered on a product under a privacy budget.

The seller sets a total epsilon and the columns (with their bounds) that may be
queried; each release spends part of the budget through
:class:`~databazaar.market.privacy.PrivacyAccountant`, which refuses a query the
remaining budget cannot cover.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from databazaar.core.errors import InvalidInput
from databazaar.market.common import EconomicsBase, latest_published, load_product, require_owner
from databazaar.market.econ_models import EPS_UNIT
from databazaar.market.privacy import PrivacyAccountant, check_columns
from databazaar.market.schemas import AccountOut, DpBudgetOut, DpReleaseOut


class DpOffers(EconomicsBase):
    """DP statistics of :class:`~databazaar.market.economics.Economics`."""

    def offer_dp(
        self, account: AccountOut, slug: str, epsilon_total: float, columns: Mapping[str, Any]
    ) -> DpBudgetOut:
        """Offer DP statistics of a product under a total privacy budget."""
        cols = check_columns(columns)
        with self.market.db.read() as s:
            prod = load_product(s, slug, eager=False)
            require_owner(prod, account)
            ver = latest_published(s, prod)
        frame = self._read_version(ver)
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise InvalidInput(f"the table has no columns {missing}")
        with self.market.db.write() as s:
            prod = load_product(s, slug, lock=True, eager=False)
            PrivacyAccountant(s).set_budget(prod.id, epsilon_total, cols)
        return self.dp_budget(slug)

    def dp_budget(self, slug: str) -> DpBudgetOut:
        """The product's DP offer: columns, budget, spent and remaining epsilon."""
        with self.market.db.read() as s:
            prod = load_product(s, slug, eager=False)
            acct = PrivacyAccountant(s)
            row = acct.budget(prod.id)
            return DpBudgetOut(
                slug=prod.slug,
                columns=row.columns,
                epsilon_total=row.epsilon_total_micro / EPS_UNIT,
                epsilon_spent=row.epsilon_spent_micro / EPS_UNIT,
                epsilon_remaining=(row.epsilon_total_micro - row.epsilon_spent_micro) / EPS_UNIT,
                n_releases=len(acct.releases(prod.id)),
            )

    def dp_query(
        self,
        account: AccountOut,
        slug: str,
        statistic: str,
        column: str | None = None,
        epsilon: float = 0.1,
        *,
        random_state: Any = None,
    ) -> DpReleaseOut:
        """Release one DP statistic, spending ``epsilon`` of the product's budget.

        Refused with :class:`~databazaar.core.errors.BudgetExceeded` (nothing spent)
        when the budget left is smaller than ``epsilon``.
        """
        with self.market.db.read() as s:
            prod = load_product(s, slug, eager=False)
            PrivacyAccountant(s).budget(prod.id)
            ver = latest_published(s, prod)
        frame = self._read_version(ver)
        seed = random_state if random_state is not None else self._seed()
        with self.market.db.write() as s:
            prod = load_product(s, slug, eager=False)
            result = PrivacyAccountant(s).spend(
                prod.id, account.id, frame, statistic, column, epsilon, random_state=seed
            )
        return DpReleaseOut.model_validate(result)
