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


def register(sub) -> None:
    con = sub.add_parser("contracts", help="contracts").add_subparsers(dest="contracts_command", required=True)
    due = con.add_parser("close-due", help="close every contract whose last claim window has closed and "
                                           "nothing awaits approval, releasing its commitments (run daily)")
    due.add_argument("--today", help="the day to judge by (YYYY-MM-DD; default today)")
    due.set_defaults(func=cmd_close_due)
