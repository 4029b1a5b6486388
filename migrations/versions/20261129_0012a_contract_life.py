"""A contract over its whole life: schedule, claim windows, run-off, payer caps, commitments by share.

Schema: outcome_contracts gains the schedule (payment_frequency, service_end_date,
outcomes_end_date, claim_window_days), terminated_on and closed_at; payer_shares gains
max_amount_minor; late_claim_grants is new and append-only.

Data: commitments become "by share" (PAYOUTS.md §6). They cannot be reinterpreted without a
posting — the fund's FUND_COMMITTED balances hold 100 % of maxValue less the fund's draws (and
may be negative where a payout was posted after a termination), while the rule is the fund's
share less what the fund paid, never below zero, and the other payers commit too. So for every
activated contract this migration posts one COMMITMENT_MIGRATION transaction to the hash chain
that moves each payer's commitment to what the rule gives (open contracts: max(0, share of
maxValue − paid); ended ones: 0). No journal row is edited; the chain continues from the head.
Contracts already COMPLETED or TERMINATED are treated as closed (their commitments were released).

Revision ID: 0012a
Revises: 0004
Create Date: 2026-11-29 22:30:00
"""
from datetime import datetime, timezone
from decimal import Decimal

from alembic import op
import sqlalchemy as sa

from ledger.models.base import UTCDateTime

revision = '0012a'
down_revision = '0004'
branch_labels = None
depends_on = None

APPEND_ONLY = ("late_claim_grants",)
ACTOR = "migration 0012a"


def create_append_only_triggers(tables) -> None:
    # utfall_refuse_change() was created by revision 0001 on PostgreSQL
    for t in tables:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                       "FOR EACH ROW EXECUTE FUNCTION utfall_refuse_change()")
            op.execute(f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION utfall_refuse_change()")
        else:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {t}_no_{verb.lower()} BEFORE {verb} ON {t} "
                           f"BEGIN SELECT RAISE(ABORT, '{t} is append-only: {verb} refused'); END")


def drop_append_only_triggers(tables) -> None:
    for t in tables:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}")
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        else:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {t}_no_{verb}")


def upgrade() -> None:
    # plain ADD COLUMN (no batch): on SQLite a batch rebuild would drop payer_shares' triggers
    op.add_column('outcome_contracts', sa.Column('payment_frequency', sa.String(length=20), nullable=True))
    op.add_column('outcome_contracts', sa.Column('service_end_date', sa.Date(), nullable=True))
    op.add_column('outcome_contracts', sa.Column('outcomes_end_date', sa.Date(), nullable=True))
    op.add_column('outcome_contracts', sa.Column('claim_window_days', sa.Integer(), nullable=True))
    op.add_column('outcome_contracts', sa.Column('terminated_on', sa.Date(), nullable=True))
    op.add_column('outcome_contracts', sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('payer_shares', sa.Column('max_amount_minor', sa.BigInteger(), nullable=True))
    op.create_table('late_claim_grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=True),
    sa.Column('metric_code', sa.String(length=60), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('until', sa.Date(), nullable=False),
    sa.Column('granted_by', sa.String(length=200), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_late_claim_grants_contract_id_outcome_contracts')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_late_claim_grants_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_late_claim_grants'))
    )
    with op.batch_alter_table('late_claim_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_late_claim_grants_contract_id'), ['contract_id'], unique=False)
    create_append_only_triggers(APPEND_ONLY)
    _migrate_commitments(op.get_bind())


def downgrade() -> None:
    drop_append_only_triggers(APPEND_ONLY)
    with op.batch_alter_table('late_claim_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_late_claim_grants_contract_id'))
    op.drop_table('late_claim_grants')
    # the commitment postings stay in the journal: it is never edited
    op.drop_column('payer_shares', 'max_amount_minor')
    for column in ('closed_at', 'terminated_on', 'claim_window_days', 'outcomes_end_date', 'service_end_date',
                   'payment_frequency'):
        op.drop_column('outcome_contracts', column)


# --- data -------------------------------------------------------------------------------------
# Plain SQL on the migration's connection with this revision's own view of the tables, so later
# revisions that add columns to the ORM models cannot break it; hashes come from the same
# canonical form the application uses (ledger.journal).

_contracts = sa.table('outcome_contracts', sa.column('id'), sa.column('fund_id'), sa.column('status'),
                      sa.column('currency'), sa.column('activated_at'), sa.column('ended_at', UTCDateTime()),
                      sa.column('closed_at', UTCDateTime()))
_funds = sa.table('outcome_funds', sa.column('id'), sa.column('manager_id'))
_terms = sa.table('contract_terms', sa.column('id'), sa.column('contract_id'), sa.column('version'),
                  sa.column('effective_from'), sa.column('max_value_minor'))
_shares = sa.table('payer_shares', sa.column('terms_id'), sa.column('position'), sa.column('party_id'),
                   sa.column('percent'))
_payouts = sa.table('payouts', sa.column('id'), sa.column('contract_id'), sa.column('status'))
_payout_shares = sa.table('payout_shares', sa.column('payout_id'), sa.column('party_id'), sa.column('amount_minor'))
_accounts = sa.table('ledger_accounts', sa.column('id'), sa.column('key'), sa.column('code'), sa.column('name'),
                     sa.column('party_id'), sa.column('contract_id'), sa.column('counterparty_id'),
                     sa.column('fund_id'), sa.column('currency'), sa.column('balance_minor'),
                     sa.column('last_sequence'), sa.column('created_at', UTCDateTime()))
_head = sa.table('ledger_head', sa.column('id'), sa.column('sequence'), sa.column('hash'),
                 sa.column('posted_at', UTCDateTime()))
_transactions = sa.table('ledger_transactions', sa.column('sequence'), sa.column('posted_at', UTCDateTime()),
                         sa.column('effective_date'), sa.column('kind'), sa.column('description'), sa.column('actor'),
                         sa.column('reverses'), sa.column('contract_id'), sa.column('previous_hash'), sa.column('hash'))
_entries = sa.table('ledger_entries', sa.column('sequence'), sa.column('line'), sa.column('account_id'),
                    sa.column('currency'), sa.column('amount_minor'), sa.column('balance_after_minor'))


def _account(conn, code: str, name: str, party_id: int, currency: str, contract_id, fund_id, now):
    from ledger.journal import account_key
    key = account_key(code, party_id, currency, contract_id, None, fund_id)
    row = conn.execute(sa.select(_accounts.c.id, _accounts.c.balance_minor).where(_accounts.c.key == key)).first()
    if row is not None:
        return row.id, int(row.balance_minor)
    conn.execute(sa.insert(_accounts).values(key=key, code=code, name=name, party_id=party_id, contract_id=contract_id,
                                             counterparty_id=None, fund_id=fund_id, currency=currency, balance_minor=0,
                                             last_sequence=0, created_at=now))
    return conn.execute(sa.select(_accounts.c.id).where(_accounts.c.key == key)).scalar_one(), 0


def _post(conn, *, contract_id: int, currency: str, legs: list[tuple[int, int, int]], now) -> None:
    """One balanced transaction of (account id, balance before, amount) legs, chained to the head."""
    from ledger.journal import canonical_bytes, chain_hash
    head = conn.execute(sa.select(_head.c.sequence, _head.c.hash).where(_head.c.id == 1)).first()
    if head is None:  # no posting yet: an activated contract always posted, so this is defensive only
        conn.execute(sa.insert(_head).values(id=1, sequence=0, hash="0" * 64, posted_at=None))
        head = conn.execute(sa.select(_head.c.sequence, _head.c.hash).where(_head.c.id == 1)).first()
    sequence = int(head.sequence) + 1
    tx = {"sequence": sequence, "posted_at": now, "effective_date": now.date(), "kind": "COMMITMENT_MIGRATION",
          "description": f"Commitments of contract {contract_id} by payer share (PAYOUTS.md §6), migration 0012a",
          "actor": ACTOR, "reverses": None, "contract_id": contract_id}
    entries = [{"sequence": sequence, "line": i, "account_id": acc, "currency": currency, "amount_minor": amount,
                "balance_after_minor": before + amount} for i, (acc, before, amount) in enumerate(legs)]
    digest = chain_hash(head.hash, canonical_bytes(tx, entries))
    conn.execute(sa.insert(_transactions).values(**tx, previous_hash=head.hash, hash=digest))
    conn.execute(sa.insert(_entries), entries)
    for e in entries:
        conn.execute(sa.update(_accounts).where(_accounts.c.id == e["account_id"])
                     .values(balance_minor=e["balance_after_minor"], last_sequence=sequence))
    conn.execute(sa.update(_head).where(_head.c.id == 1).values(sequence=sequence, hash=digest, posted_at=now))


def _migrate_commitments(conn) -> None:
    from ledger.money import split_largest_remainder
    now = datetime.now(timezone.utc)
    ended = conn.execute(sa.select(_contracts.c.id, _contracts.c.ended_at)
                         .where(_contracts.c.status.in_(("COMPLETED", "TERMINATED")))).all()
    for cid, ended_at in ended:
        conn.execute(sa.update(_contracts).where(_contracts.c.id == cid).values(closed_at=ended_at or now))
    rows = conn.execute(sa.select(_contracts.c.id, _contracts.c.status, _contracts.c.currency, _funds.c.id.label("fund_id"),
                                  _funds.c.manager_id)
                        .join(_funds, _funds.c.id == _contracts.c.fund_id)
                        .where(_contracts.c.activated_at.is_not(None)).order_by(_contracts.c.id)).all()
    for c in rows:
        terms = conn.execute(sa.select(_terms.c.id, _terms.c.max_value_minor).where(_terms.c.contract_id == c.id)
                             .order_by(_terms.c.effective_from.desc(), _terms.c.version.desc()).limit(1)).first()
        shares = conn.execute(sa.select(_shares.c.party_id, _shares.c.percent).where(_shares.c.terms_id == terms.id)
                              .order_by(_shares.c.position)).all()
        parts = split_largest_remainder(int(terms.max_value_minor), [Decimal(str(p.percent)) for p in shares])
        open_ = c.status in ("ACTIVE", "SUSPENDED")
        goal = {p.party_id: part for p, part in zip(shares, parts)} if open_ else {}
        paid = dict(conn.execute(
            sa.select(_payout_shares.c.party_id, sa.func.sum(_payout_shares.c.amount_minor))
            .join(_payouts, _payouts.c.id == _payout_shares.c.payout_id)
            .where(_payouts.c.contract_id == c.id, _payouts.c.status == "POSTED")
            .group_by(_payout_shares.c.party_id)).all())
        held = {r.party_id for r in conn.execute(sa.select(_accounts.c.party_id).where(
            _accounts.c.contract_id == c.id, _accounts.c.code.in_(("FUND_COMMITTED", "PAYER_COMMITTED"))))}
        legs = []
        for party in sorted(set(goal) | held):
            want = max(0, goal.get(party, 0) - int(paid.get(party) or 0))
            if party == c.manager_id:
                acc, before = _account(conn, "FUND_COMMITTED", "Committed to contract", party, c.currency, c.id,
                                       c.fund_id, now)
                contra = _account(conn, "FUND_COMMITMENT_RESERVE", "Commitments (contra)", party, c.currency, None,
                                  c.fund_id, now)
            else:
                acc, before = _account(conn, "PAYER_COMMITTED", "Committed to contract", party, c.currency, c.id,
                                       None, now)
                contra = _account(conn, "PAYER_COMMITMENT_RESERVE", "Commitments (contra)", party, c.currency, None,
                                  None, now)
            delta = want - before
            if delta:
                legs += [(acc, before, delta), (contra[0], contra[1], -delta)]
        if legs:
            # a contra account can appear twice only if two payers share it, which they never do (one per party)
            _post(conn, contract_id=c.id, currency=c.currency, legs=legs, now=now)
