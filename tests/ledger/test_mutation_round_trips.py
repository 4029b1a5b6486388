"""A mutation in a group commit batch waits for each statement it sends: fewer statements, same rows.

- `journal.open_accounts` gives exactly the accounts `open_account` gives one by one, opening
  the missing ones, in the order asked, with ONE read: a deposit reads its two accounts once;
- on PostgreSQL a mutation with an idempotency key writes the key's result and its audit event
  in ONE statement; the rows are those two statements wrote (SQLite keeps two: it has no round
  trip to save).
"""
from __future__ import annotations

import gc
import threading
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import event, func, select

from ledger import chart, funds, journal
from ledger.access import Actor
from ledger.audit import run_mutation
from ledger.db import Database, make_engine
from ledger.models import Account, AuditEvent, IdempotencyKey, Transaction
from tests.factories import funded, party, sek

FM = Actor("frida", "FUND_MANAGER", token_id=None)


def _sent_by(engine, work) -> tuple[object, list[str]]:
    """What `work()` returns, and the statements SQLAlchemy sent meanwhile (postings go through the
    driver and are not seen here)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(" ".join(statement.split()).upper().replace('"', ""))  # (SQLite quotes "key")
    event.listen(engine, "before_cursor_execute", record)
    try:
        return work(), seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _in_one_uow(db, fn):
    with db.uow() as uow:
        result = fn(uow)
        uow.commit()
    return result


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from([chart.FUND_CASH, chart.FUND_CAPITAL, chart.PAYABLE]),
                          st.integers(0, 2), st.sampled_from(["SEK", "EUR"]), st.booleans()), min_size=1, max_size=5))
def test_open_accounts_gives_what_open_account_gives_one_by_one(engine, wanted):
    conn = engine.connect()
    outer = conn.begin()
    try:
        _open_accounts_as_one_by_one(Database(conn), wanted)
    finally:
        outer.rollback()
        conn.close()


def _open_accounts_as_one_by_one(db, wanted) -> None:
    # given three parties, every other account asked for opened before
    owners = [party(db, role="FUND", name=f"Fond {i}") for i in range(3)]
    specs = [chart.wanted(code, owners[o].id, cur, contract_id=7 if with_contract else None)
             for code, o, cur, with_contract in wanted]
    with db.uow() as uow:
        before = [journal.open_account(uow, **spec).id for spec in specs[::2]]
        uow.commit()
    # when all are asked for at once
    with db.uow() as uow:
        together = journal.open_accounts(uow, specs)
        uow.commit()
    # then each is the account asking for it alone gives, the ones opened before included
    with db.uow() as uow:
        alone = [journal.open_account(uow, **spec) for spec in specs]
        assert [a.id for a in together] == [a.id for a in alone]
        assert [a.id for a in together[::2]] == before
        assert [(a.code, a.party_id, a.currency, a.contract_id) for a in together] == [
            (s["code"], s["party_id"], s["currency"], s["contract_id"]) for s in specs]
        # one account per distinct key, none more
        keys = {journal.account_key(s["code"], s["party_id"], s["currency"], s["contract_id"], None) for s in specs}
        owned = uow.session.execute(select(func.count()).select_from(Account).where(
            Account.party_id.in_([o.id for o in owners]))).scalar_one()
        assert owned == len(keys)


def test_a_deposit_reads_its_fund_and_its_two_accounts_in_two_statements(db, engine):
    fund, *_ = funded(db, FM, capital="")
    _, seen = _sent_by(engine, lambda: _in_one_uow(db, lambda uow: funds.deposit_capital(
        uow, actor=FM, fund_id=fund.id, amount=sek("100.00"), effective_date=date(2026, 1, 1), reference="r")))
    # (the posting then reads the accounts' balances by id under the head lock on SQLite; on PostgreSQL
    # its chain memory holds them)
    reads = [s for s in seen if s.startswith("SELECT") and ("FROM OUTCOME_FUNDS" in s or "LEDGER_ACCOUNTS.KEY" in s)]
    assert len(reads) == 2, reads
    assert "FROM OUTCOME_FUNDS" in reads[0] and "LEDGER_ACCOUNTS.KEY IN" in reads[1]


def test_a_deposit_and_its_answer_read_the_fund_once(db, engine):
    # as depositCapital's resolver does: the use case, then the fund again for the payload
    fund, *_ = funded(db, FM, capital="")

    def deposit_and_answer(uow):
        tx = funds.deposit_capital(uow, actor=FM, fund_id=fund.id, amount=sek("100.00"),
                                   effective_date=date(2026, 1, 1), reference="r")
        gc.collect()  # nothing else of the use case's holds the fund it read
        return tx, funds.get_fund(uow, fund.id)
    (tx, answered), seen = _sent_by(engine, lambda: _in_one_uow(db, deposit_and_answer))
    assert answered.id == fund.id and answered.name == fund.name and tx.sequence > 0
    assert len([s for s in seen if s.startswith("SELECT") and "FROM OUTCOME_FUNDS" in s]) == 1, seen


def test_a_keyed_mutation_writes_its_result_and_its_audit_event_in_one_statement_on_postgresql(db, engine):
    fund, *_ = funded(db, FM, capital="")
    tx, seen = _sent_by(engine, lambda: _in_one_uow(db, lambda uow: run_mutation(
        uow, actor=FM, operation="depositCapital", params={"fundId": fund.id, "amount": "5.00"}, idempotency_key="k-1",
        action=lambda: funds.deposit_capital(uow, actor=FM, fund_id=fund.id, amount=sek("5.00"),
                                             effective_date=date(2026, 1, 1), reference="r"))))
    # (the statement is seen at the driver's cursor: on PostgreSQL it may be queued behind the posting)
    writes = [s for s in seen if "AUDIT_EVENTS" in s or ("IDEMPOTENCY_KEYS" in s and not s.startswith("INSERT"))]
    if engine.dialect.name == "postgresql":
        assert len(writes) == 1 and writes[0].startswith("WITH RESULT AS (UPDATE IDEMPOTENCY_KEYS"), writes
    else:
        assert [w.split()[0] for w in writes] == ["UPDATE", "INSERT"], writes
    # the rows are the same either way: the key names its result, the event who did what with what
    with db.reading() as s:
        key = s.execute(select(IdempotencyKey).where(IdempotencyKey.key == "k-1")).scalar_one()
        assert (key.operation, key.result_type, key.result_id) == ("depositCapital", "Transaction", str(tx.sequence))
        ev = s.execute(select(AuditEvent).order_by(AuditEvent.id.desc())).scalars().first()
        assert (ev.actor, ev.role, ev.party_id, ev.operation) == ("frida", "FUND_MANAGER", None, "depositCapital")
        assert (ev.result_type, ev.result_id) == ("Transaction", str(tx.sequence))
        assert ev.input == '{"amount":"5.00","fundId":%d}' % fund.id
        assert ev.occurred_at.tzinfo is not None
    # and the key answers the same result again without posting
    with db.uow() as uow:
        again = run_mutation(uow, actor=FM, operation="depositCapital", params={"fundId": fund.id, "amount": "5.00"},
                             idempotency_key="k-1", action=lambda: 1 / 0)
        uow.commit()
    assert again.sequence == tx.sequence


def _keyed_deposit(fund_id: int, key: str, amount: str):
    return lambda uow: run_mutation(
        uow, actor=FM, operation="depositCapital", params={"fundId": fund_id, "amount": amount}, idempotency_key=key,
        action=lambda: funds.deposit_capital(uow, actor=FM, fund_id=fund_id, amount=sek(amount),
                                             effective_date=date(2026, 1, 1), reference=key))


@pytest.mark.parametrize("how", ["alone", "group-commit", "beside-another-process"])
def test_keyed_mutations_through_the_writer_leave_each_result_and_audit_event_committed(fresh_engine, how):
    # given a fund with its accounts, and mutations run as the service runs them: alone (rerunnable, its
    # posting, result and event sent with its COMMIT on PostgreSQL) or in group commit batches (each
    # claim sent behind the mutation before it), from several threads at once; and beside another
    # "process" (an engine of its own) posting meanwhile, so that this one's chain memory is often out of
    # date and a posting queued in a batch fails where the next mutation's claim waits for it
    fund, *_ = funded(Database(fresh_engine), FM, capital="1.00")
    db = Database(fresh_engine, group_commit=how != "alone")
    other = Database(make_engine(fresh_engine.url.render_as_string(hide_password=False))) if how == "beside-another-process" else None
    keys = [f"k-{t}-{i}" for t in range(4) for i in range(6)]
    other_keys = [f"o-{i}" for i in range(12)] if other is not None else []
    answers: dict[str, int] = {}
    failed: list[BaseException] = []

    def client(t: int) -> None:
        try:
            for i in range(6):
                key = f"k-{t}-{i}"
                answers[key] = db.write(_keyed_deposit(fund.id, key, f"{t + 1}.{i:02d}")).sequence
        except BaseException as exc:  # noqa: BLE001 - asserted below, in the test's thread
            failed.append(exc)

    def other_process() -> None:
        try:
            for key in other_keys:
                answers[key] = other.write(_keyed_deposit(fund.id, key, "9.99")).sequence
        except BaseException as exc:  # noqa: BLE001 - asserted below, in the test's thread
            failed.append(exc)

    try:
        threads = [threading.Thread(target=client, args=(t,)) for t in range(4)]
        if other is not None:
            threads.append(threading.Thread(target=other_process))
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        # a key sent again answers its result without posting again
        again = db.write(_keyed_deposit(fund.id, keys[5], "1.05")).sequence
    finally:
        if db.group_commit is not None:
            db.group_commit.close()
        if other is not None:
            other.engine.dispose()
    assert not failed, failed
    assert again == answers[keys[5]]
    # then every key names its own transaction, and one audit event says who did it with what
    with Database(fresh_engine).reading() as s:
        stored = {k.key: k for k in s.execute(select(IdempotencyKey)).scalars()}
        events = s.execute(select(AuditEvent).where(AuditEvent.operation == "depositCapital")).scalars().all()
        assert sorted(stored) == sorted(keys + other_keys)
        assert {k: (v.result_type, v.result_id) for k, v in stored.items()} == {
            k: ("Transaction", str(answers[k])) for k in keys + other_keys}
        assert sorted(int(e.result_id) for e in events) == sorted(answers.values())
        assert len(set(answers.values())) == len(keys + other_keys)
        assert journal.verify(s).ok


def _two_postings(fund_id: int):
    def work(uow):
        first = funds.deposit_capital(uow, actor=FM, fund_id=fund_id, amount=sek("1.00"), effective_date=date(2026, 1, 1),
                                      reference="first")
        funds.deposit_capital(uow, actor=FM, fund_id=fund_id, amount=sek("2.00"), effective_date=date(2026, 1, 1),
                              reference="second")
        return first
    return work


@pytest.mark.parametrize("work", ["keyed mutation", "two postings"])
def test_a_unit_of_work_with_a_posting_and_more_after_it_runs_once(fresh_engine, work):
    # given a lone unit of work (no group commit) whose posting is held back to go with its COMMIT on
    # PostgreSQL, and then something more queued behind it: the key's result and audit event, or a second
    # posting. The held posting must go first, once: sent twice, the second would fail and the whole
    # unit of work would run again (correct in the end, but twice the work and round trips)
    fund, *_ = funded(Database(fresh_engine), FM, capital="1.00")
    db = Database(fresh_engine)
    runs: list[bool] = []
    make = _keyed_deposit(fund.id, "once", "3.00") if work == "keyed mutation" else _two_postings(fund.id)

    def counted(uow):
        runs.append(uow.may_rerun)
        return make(uow)

    for _ in range(3):  # (the first posting of a process reads the head; later ones post from its memory)
        runs.clear()
        tx = db.write(counted)
        assert len(runs) == 1, f"ran {len(runs)} times"
    with db.reading() as s:
        assert journal.verify(s).ok
        assert s.execute(select(func.max(Transaction.sequence))).scalar_one() == tx.sequence + (work == "two postings")
