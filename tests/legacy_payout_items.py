"""Payouts calculated as before migration 0020p, for the migration tests: every item a
payout_items row (evidence items first, then measurement items, ids from the table), and no
item blocks read (the table does not exist yet below 0020p); and their recorded inputs in
the payout's row, as before migration 0021p."""
from __future__ import annotations

import re
from contextlib import contextmanager
from collections.abc import Iterator

import pytest
from sqlalchemy import event, insert
from sqlalchemy.engine import Engine

from ledger import calculations, payout_items, payouts
from ledger.models import PayoutItem


def write_rows(s, payout_id, kinds, evidence_ids, participant_ids, metric_codes, gross, capped, net, measured,
               blocks=None) -> None:
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


# the payout's row as the ORM reads it since 0021p, and as it read before
_INPUTS_READ = re.compile(r"\(SELECT payout_inputs\.inputs\s+FROM payout_inputs\s+WHERE payout_inputs\.payout_id = "
                          r"payouts\.id\)")
_PAYOUT_INSERT = re.compile(r"INSERT INTO payouts \((.*?)\) VALUES \((.*)\)( RETURNING [^)]*)?$", re.S)


@contextmanager
def inputs_in_payout_rows() -> Iterator[None]:
    """Payouts calculated inside record their inputs in the payout's row, as before migration 0021p.

    The statements the ORM sends are rewritten on their way to the driver: a payout's INSERT
    gets its `inputs` column (the canonical inputs whose hash it carries), and reading the
    inputs from `payout_inputs` reads the column instead.
    """
    recorded: dict[str, str] = {}
    calculate_with_canonical = payouts.calculate_with_canonical

    def remember(inputs, *, before_caps=None):
        def keep(canonical, inputs_hash):  # before the payout's row is written
            recorded[inputs_hash] = canonical.decode("utf-8")
            if before_caps is not None:
                before_caps(canonical, inputs_hash)

        return calculate_with_canonical(inputs, before_caps=keep)

    def rewrite(conn, cursor, statement, parameters, context, executemany):
        insert_ = _PAYOUT_INSERT.match(statement)
        if insert_ is not None and not executemany:
            columns = insert_[1].split(", ")
            if isinstance(parameters, dict):
                parameters = {**parameters, "legacy_inputs": recorded[parameters["inputs_hash"]]}
                mark = "%(legacy_inputs)s"
            else:
                parameters = (*parameters, recorded[parameters[columns.index("inputs_hash")]])
                mark = "?"
            statement = f"INSERT INTO payouts ({insert_[1]}, inputs) VALUES ({insert_[2]}, {mark}){insert_[3] or ''}"
        return _INPUTS_READ.sub("payouts.inputs", statement), parameters

    event.listen(Engine, "before_cursor_execute", rewrite, retval=True)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(payouts, "calculate_with_canonical", remember)
            mp.setattr(calculations, "_record_inputs", lambda s, payout_id, recorded: lambda: None)
            yield
    finally:
        event.remove(Engine, "before_cursor_execute", rewrite)
