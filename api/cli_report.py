"""`utfall report`: the evaluation report on the terminal, in full or as the public sees it.

    utfall report [--public] [--year YYYY [--fund ID]]

Full figures by default (whoever runs the command can read the database); --public applies the
disclosure control of the public page. --year limits it to payouts for periods ending in that
year and penalties issued in it, one report per fund (or the one --fund names).
"""
from __future__ import annotations

from datetime import date

from sqlalchemy import select


def _amount(units: int | None, cur: str) -> str:
    from ledger import money as m
    return "–" if units is None else f"{m.from_minor(units, cur).amount:,} {cur}".replace(",", " ")


def _table(title: str, rows) -> None:
    print(title)
    print(f"  {'':<40} {'contracts':>9} {'outcomes':>9} {'units':>8} {'paid':>18} {'penalties':>14} "
          f"{'per outcome':>15} {'per unit':>12}")
    for r in rows:
        outcomes = "suppressed" if r.outcomes is None else str(r.outcomes)
        print(f"  {r.label[:40]:<40} {r.contracts:>9} {outcomes:>9} {r.outcome_units:>8} "
              f"{_amount(r.amount_paid_minor, r.currency):>18} {_amount(r.penalties_minor, r.currency):>14} "
              f"{_amount(r.cost_per_outcome_minor, r.currency):>15} {_amount(r.cost_per_unit_minor, r.currency):>12}")
        behind = f"    behind the figures: {r.outcome_contracts} contract(s) with outcomes, {r.paid_contracts} paid"
        print(behind + (f"; {r.left_out} figure(s) left out (small numbers)" if r.left_out else ""))
    print()


def _metrics(rows) -> None:
    print("By metric, each in its own unit")
    print(f"  {'':<56} {'unit':<22} {'quantity':>9} {'paid':>18} {'per unit':>14}")
    for f in rows:
        qty = "suppressed" if f.quantity is None else f"{f.quantity}"
        unit = "outcomes" if f.unit == "OUTCOME" else f.name.lower()
        print(f"  {(f.contract_title + ' — ' + f.name)[:56]:<56} {unit[:22]:<22} {qty:>9} "
              f"{_amount(f.amount_paid_minor, f.currency):>18} {_amount(f.cost_per_unit_minor, f.currency):>14}")
    print()


def print_report(report) -> None:
    _table("By ownership form", report.by_ownership)
    _table("By policy area", report.by_policy_area)
    _metrics(report.by_metric)
    _table("By provider", report.by_provider)
    _table("By contract", report.by_contract)
    from api.cli_investments import print_investor_returns
    print_investor_returns(report)


def cmd_report(args, settings) -> int:
    from api.cli import _db, _pk
    from ledger import reports
    from ledger.models import OutcomesFund
    db = _db(settings)
    full = not args.public
    with db.reading() as s:
        print("What do we get for the money, whoever runs the service? (posted payouts, after clawbacks)")
        print("Full figures." if full else "As the public sees it: small numbers suppressed.")
        print()
        if args.year is None:
            print_report(reports.evaluation_report(s, full=full))
            return 0
        period = (date(args.year, 1, 1), date(args.year, 12, 31))
        stmt = select(OutcomesFund).order_by(OutcomesFund.id)
        if args.fund is not None:
            stmt = stmt.where(OutcomesFund.id == _pk(args.fund, "Fund"))
        for fund in s.scalars(stmt):
            print(f"=== Annual report {args.year}: {fund.name} ===\n")
            print_report(reports.evaluation_report(s, full=full, fund_id=fund.id, period=period))
    return 0


def register(subparsers) -> None:
    rep = subparsers.add_parser("report", help="the evaluation report: outcomes and money by ownership form, policy "
                                               "area, metric, provider and contract",
                                  description="Print the evaluation report from the database: what was paid and "
                                              "achieved, by ownership form, policy area, metric, provider and "
                                              "contract. Read-only: needs no UTFALL_SECRET.")
    rep.add_argument("--public", action="store_true", help="as the public sees it (small numbers suppressed)")
    rep.add_argument("--year", type=int, metavar="YYYY", help="an annual report per fund for this year")
    rep.add_argument("--fund", metavar="ID", help="with --year: only this fund (global or numeric ID)")
    rep.set_defaults(func=cmd_report)
