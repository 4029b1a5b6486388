"""`utfall contracts close-due` and `utfall forecast`: a contract's life from the command line."""
from __future__ import annotations

from datetime import date

from ledger.access import SYSTEM
from ledger.db import Database, make_engine


def cmd_close_due(args, settings) -> int:
    from ledger import contracts
    db = Database(make_engine(settings.database_url))
    with db.uow() as uow:
        closed = contracts.close_due_contracts(uow, actor=SYSTEM, today=date.fromisoformat(args.today) if args.today else None)
        rows = [(c.id, c.title, c.status) for c in closed]
        uow.commit()
    for cid, title, status in rows:
        print(f"contract {cid} ({title}): {status}, claim windows closed, remaining commitments released")
    print(f"{len(rows)} contract(s) closed")
    return 0


def cmd_forecast(args, settings) -> int:
    from api.cli import _pk
    from ledger import forecast
    from ledger import money as m
    from ledger.models import Party, utcnow
    db = Database(make_engine(settings.database_url))
    with db.reading() as s:
        lines = forecast.forecast(s, fund_id=_pk(args.fund, "Fund") if args.fund else None,
                                  contract_id=_pk(args.contract, "OutcomeContract") if args.contract else None,
                                  today=utcnow().date())
        names = {p.id: p.name for p in s.query(Party).filter(Party.id.in_({x.party_id for x in lines}))} if lines else {}

    def amount(units, cur):
        return f"{m.from_minor(units, cur).amount:,}".replace(",", " ")
    print(f"{'contract':>8}  {'payer':<28} {'period':<23} {'claims until':<12} {'certain':>16} {'probable':>16} {'maximum':>16}")
    for x in lines:
        print(f"{x.contract_id:>8}  {names.get(x.party_id, x.party_id)!s:<28.28} {x.period_start}..{x.period_end} "
              f"{x.claim_deadline or '':<12} {amount(x.certain_minor, x.currency):>16} "
              f"{amount(x.probable_minor, x.currency):>16} {amount(x.maximum_minor, x.currency):>16}")
    print()
    print("Totals per fiscal year (by the period's last day; maximum: what the caps still allow)")
    for (year, cur), (certain, probable, maximum) in forecast.fiscal_year_totals(lines).items():
        print(f"  {year} {cur}  certain {amount(certain, cur):>16}  probable {amount(probable, cur):>16}  "
              f"maximum {amount(maximum, cur):>16}")
    return 0


def register(sub) -> None:
    fc = sub.add_parser("forecast", help="what each payer may still have to pay, per contract and period, "
                                         "with totals per fiscal year")
    fc.add_argument("--fund", help="only this fund (ID, global or numeric)")
    fc.add_argument("--contract", help="only this contract (ID, global or numeric)")
    fc.set_defaults(func=cmd_forecast)
    con = sub.add_parser("contracts", help="contracts").add_subparsers(dest="contracts_command", required=True)
    due = con.add_parser("close-due", help="close every contract whose last claim window has closed and "
                                           "nothing awaits approval, releasing its commitments (run daily)")
    due.add_argument("--today", help="the day to judge by (YYYY-MM-DD; default today)")
    due.set_defaults(func=cmd_close_due)
