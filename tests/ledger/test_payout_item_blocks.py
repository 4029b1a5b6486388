"""A payout's evidence items as packed blocks (migration 0020p): exact to the öre, the same
figures and items as when every item was a row, traceable evidence → payout, append-only."""
from __future__ import annotations

from array import array
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import calculations, forecast, payout_items
from ledger import evidence as ev
from ledger.access import Actor
from ledger.models import PayoutCalculation
from tests.factories import contract, funded, payout, rate_card, sek
from tests.legacy_payout_items import items_as_rows

FM, FM2 = Actor("frida", "FUND_MANAGER"), Actor("gustav", "FUND_MANAGER")
SECRET = b"test-secret-for-hmac-0123456789"
TODAY = date(2026, 11, 23)
H1, H2 = (date(2026, 1, 1), date(2026, 6, 30)), (date(2026, 7, 1), date(2026, 12, 31))
INT64 = st.integers(-2**63, 2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("OUTCOME", "CLAWBACK")), st.sampled_from(("A", "SCHOOL_PASS", "B_2")),
                          st.integers(1, 2**63 - 1), st.integers(1, 2**63 - 1), INT64, INT64, INT64), min_size=1,
                max_size=300))
def test_a_block_reads_back_every_item_exactly(items):
    kinds, codes, eids, pids, gross, capped, net = (list(c) for c in zip(*items))
    names, packed = payout_items.pack(kinds, codes, eids, pids, gross, capped, net)
    block = payout_items.unpack(7, 1000, len(items), names, packed)
    assert block == (7, 1000, kinds, codes, eids, pids, gross, capped, net)
    assert [r.id for r in block.rows()] == list(range(1000, 1000 + len(items)))
    assert all(type(v) is int for v in gross + capped + net)  # whole minor units, never a float


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(("OUTCOME", "CLAWBACK")),
       st.lists(st.tuples(st.sampled_from(("A", "SCHOOL_PASS", "B_2")), st.integers(1, 2**63 - 1), INT64), min_size=1,
                max_size=300))
def test_a_block_of_one_kind_packs_as_any_other(kind, items):
    # one kind (the usual block) is indexed by metric code alone: the same names and bytes as
    # indexing by (kind, metric code)
    codes, eids, amounts = (list(c) for c in zip(*items))
    kinds = [kind] * len(items)
    pairs = sorted(set(zip(kinds, codes)))
    index = {pair: i for i, pair in enumerate(pairs)}
    expected = array("q", eids + eids + [index[p] for p in zip(kinds, codes)] + amounts * 3)
    if payout_items._BIG_ENDIAN:
        expected.byteswap()
    assert payout_items.pack(kinds, codes, eids, eids, amounts, amounts, amounts) == (
        "\n".join(f"{k} {c}" for k, c in pairs), expected.tobytes())


def test_a_block_refuses_what_it_cannot_hold_exactly():
    one = (["OUTCOME"], ["A"], [1], [2])
    with pytest.raises(OverflowError):
        payout_items.pack(*one, [2**63], [0], [2**63])
    with pytest.raises(TypeError):
        payout_items.pack(*one, [Decimal("1.5")], [0], [1])
    with pytest.raises(TypeError):
        payout_items.pack(["OUTCOME"], ["A"], [1], [None], [1], [0], [1])
    with pytest.raises(ValueError):
        payout_items.pack(["OUTCOME"], ["A\nB"], [1], [2], [1], [0], [1])
    names, packed = payout_items.pack(*one, [1], [0], [1])
    with pytest.raises(ValueError):
        payout_items.unpack(1, 1, 2, names, packed)  # a count that does not match the bytes


def _world(db):
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, participant_cap=sek("50000.00"),
                 metrics=(rate_card("SCHOOL_PASS", "40000.00", once_only=True,
                                    area_supplements=(("RURAL", Decimal(15)),)),
                          rate_card("ATTENDANCE", "12500.00", cap_per_participant=sek("25000.00"),
                                    cap_per_period=sek("40000.00"))))
    return c, Actor("pia", "PROVIDER", prov.id), Actor("vera", "VERIFIER", ver.id)


def _evidence(db, c, provider, verifier, people, claims):
    with db.uow() as uow:
        out = []
        for who, code, day in claims:
            e = ev.submit_evidence(uow, actor=provider, contract_id=c.id, today=TODAY,
                                   claim=ev.Claim(people[who].id, code, achieved_on=day))
            ev.verify_evidence(uow, actor=verifier, evidence_id=e.id, note=None)
            out.append(e.id)
        uow.commit()
    return out


def _pay(db, c, period) -> int:
    return payout(db, FM, c.id, period, approver=FM2).id


def _story(db) -> tuple[list[int], list[int], list[int], int]:
    """Payouts over two periods with caps binding, a supplementary payout of H1 after new
    evidence, and clawbacks of invalidated items: (payout ids, evidence ids, participant ids,
    contract id)."""
    c, provider, verifier = _world(db)
    with db.uow() as uow:
        people = {name: ev.enroll_participant(uow, actor=provider, secret=SECRET, contract_id=c.id,
                                              personal_identity_number=None, external_ref=name, area=area,
                                              enrolled_on=date(2026, 1, 10), today=TODAY)
                  for name, area in (("P1", "URBAN"), ("P2", "RURAL"), ("P3", "URBAN"))}
        uow.commit()
    claims = [("P1", "SCHOOL_PASS", 1), ("P1", "ATTENDANCE", 2), ("P1", "ATTENDANCE", 3), ("P1", "ATTENDANCE", 4),
              ("P2", "SCHOOL_PASS", 5), ("P2", "ATTENDANCE", 6), ("P3", "ATTENDANCE", 7), ("P3", "ATTENDANCE", 8)]
    items = _evidence(db, c, provider, verifier, people, [(w, k, date(2026, 3, d)) for w, k, d in claims])
    payouts = [_pay(db, c, H1)]
    with db.uow() as uow:
        for eid in (items[1], items[6]):
            ev.invalidate_evidence(uow, actor=verifier, evidence_id=eid, reason="Närvarolistan var falsk")
        uow.commit()
    items += _evidence(db, c, provider, verifier, people, [("P3", "ATTENDANCE", date(2026, 4, 1)),
                                                           ("P3", "SCHOOL_PASS", date(2026, 4, 2))])
    payouts.append(_pay(db, c, H1))  # supplementary: the period's caps count what H1 paid already
    items += _evidence(db, c, provider, verifier, people, [("P3", "ATTENDANCE", date(2026, 8, d)) for d in (1, 2, 3)])
    with db.uow() as uow:
        ev.invalidate_evidence(uow, actor=verifier, evidence_id=items[-4], reason="Dubblett")
        uow.commit()
    payouts.append(_pay(db, c, H2))
    # and one outcome not paid yet, for the forecast
    items += _evidence(db, c, provider, verifier, people, [("P2", "ATTENDANCE", date(2026, 9, 1))])
    return payouts, items, [people[n].id for n in ("P1", "P2", "P3")], c.id


def _told(db, story) -> list[tuple]:
    """Every payout's figures and items, with evidence and participants named by their place in
    the story, so two stories in one database compare."""
    payouts, items, people, contract_id = story
    e_at, p_at = {e: i for i, e in enumerate(items)}, {p: i for i, p in enumerate(people)}
    with db.reading() as s:
        rows = payout_items.rows_of(s, payouts)
        # what is paid is left out of the forecast, and what the period paid counts against its cap
        out = [[(x.period_start, x.certain_minor, x.probable_minor, x.maximum_minor, x.room_minor)
                for x in forecast.forecast(s, contract_id=contract_id, today=TODAY)]]
        for pid in payouts:
            p = s.get(PayoutCalculation, pid)
            assert calculations.recompute(s, p).matches
            out.append((p.total_minor, [(x.metric_code, x.kind, x.quantity, x.gross_minor, x.capped_minor, x.net_minor,
                                         x.caps) for x in p.lines],
                        [(x.kind, e_at.get(x.evidence_id), p_at.get(x.participant_id), x.metric_code, x.gross_minor,
                          x.capped_minor, x.net_minor) for x in rows[pid]]))
    return out


def test_blocks_give_the_figures_and_items_rows_gave(db, monkeypatch):
    # given the same story told once with every item a row (as before 0020p) ...
    with items_as_rows():
        as_rows = _story(db)
    # ... and once with the items in blocks of three (so a payout spans several)
    monkeypatch.setattr(payout_items, "BLOCK", 3)
    in_blocks = _story(db)
    # then every payout, its lines and its items (clawbacks included) are the same
    told = _told(db, in_blocks)
    assert told == _told(db, as_rows)
    assert any(kind == "CLAWBACK" for _, _, items in told[1:] for kind, *_ in items)
    assert told[1][0] > 0 and len(told[1][2]) == 8
    assert sum(certain for _, certain, *_ in told[0]) > 0
    with db.reading() as s:
        # the blocks hold the evidence items; no evidence item is a row any more
        blocks = payout_items.blocks_of(s, in_blocks[0])
        assert [len(b.evidence_ids) for b in blocks if b.payout_id == in_blocks[0][0]] == [3, 3, 2]
        assert s.execute(sa.text("SELECT count(*) FROM payout_items WHERE payout_id IN "
                                 f"({', '.join(map(str, in_blocks[0]))})")).scalar() == 0
        # item ids are consecutive per payout, in the order recorded
        for pid, rows in payout_items.rows_of(s, in_blocks[0]).items():
            assert [r.id for r in rows] == list(range(rows[0].id, rows[0].id + len(rows)))
        # evidence → payout: the invalidated item was paid by the first payout and clawed back by the second
        clawed = in_blocks[1][1]
        trace = [(r.payout_id, r.kind, r.net_minor) for r in payout_items.items_of_evidence(s, clawed)]
        assert [(p, k) for p, k, _ in trace] == [(in_blocks[0][0], "OUTCOME"), (in_blocks[0][1], "CLAWBACK")]
        assert trace[0][2] == -trace[1][2] > 0
    # and what is paid is not paid again: a new payout of H2 has only the outcome not paid yet
    with db.uow() as uow:
        again = calculations.calculate_payout(uow, actor=FM, contract_id=in_blocks[3], period_start=H2[0],
                                              period_end=H2[1])
        items = payout_items.rows_of(uow.session, [again.id])[again.id]
        assert [(x.kind, x.evidence_id) for x in items] == [("OUTCOME", in_blocks[1][-1])]


def test_item_blocks_are_append_only_and_name_a_payout(db):
    _story(db)
    for change in ("UPDATE payout_item_blocks SET names = 'OUTCOME X'", "DELETE FROM payout_item_blocks"):
        with db.uow() as uow:
            with pytest.raises(sa.exc.DBAPIError) as err:
                uow.session.execute(sa.text(change))
            assert "append-only" in str(err.value)
    with db.uow() as uow:
        with pytest.raises(sa.exc.IntegrityError):  # its foreign key
            uow.session.execute(sa.text(
                "INSERT INTO payout_item_blocks (payout_id, first_item_id, item_count, min_evidence_id, "
                "max_evidence_id, names, packed) SELECT 999999, first_item_id, item_count, min_evidence_id, "
                "max_evidence_id, names, packed FROM payout_item_blocks"))
