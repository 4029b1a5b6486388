"""Payouts calculated as before migration 0020p, for the migration tests: every item a
payout_items row (evidence items first, then measurement items, ids from the table), and no
item blocks read (the table does not exist yet below 0020p)."""
from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator

import pytest
from sqlalchemy import insert

from ledger import payout_items
from ledger.models import PayoutItem


def write_rows(s, payout_id, kinds, evidence_ids, participant_ids, metric_codes, gross, capped, net, measured) -> None:
    rows = [dict(payout_id=payout_id, kind=k, evidence_id=e, measurement_id=None, participant_id=p, metric_code=c,
                 gross_minor=g, capped_minor=cp, net_minor=n)
            for k, e, p, c, g, cp, n in zip(kinds, evidence_ids, participant_ids, metric_codes, gross, capped, net)]
    rows += [dict(payout_id=payout_id, kind=k, evidence_id=None, measurement_id=mid, participant_id=None,
                  metric_code=c, gross_minor=g, capped_minor=cp, net_minor=n) for k, mid, c, g, cp, n in measured]
    if rows:
        s.connection().execute(insert(PayoutItem.__table__), rows)


@contextmanager
def items_as_rows() -> Iterator[None]:
    """Payouts calculated inside write their items as rows and read no blocks."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(payout_items, "write", write_rows)
        mp.setattr(payout_items, "blocks_of", lambda s, payout_ids: [])
        yield
