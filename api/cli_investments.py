"""`utfall distribution recompute ID`: an impact bond distribution re-run from its recorded inputs."""
from __future__ import annotations


def cmd_distribution_recompute(args, settings) -> int:
    from api.cli import _db, _pk
    from ledger import investments
    db = _db(settings)
    pk = _pk(args.distribution, "Distribution")
    with db.reading() as s:
        r = investments.recompute(investments.get_distribution(s, pk))
    if r.matches:
        print(f"distribution {pk}: recomputed from its recorded inputs, every figure matches (inputs {r.inputs_hash})")
        return 0
    print(f"distribution {pk}: DIFFERS in {', '.join(r.differences)} (recomputed inputs {r.inputs_hash})")
    return 1


def register(sub) -> None:
    dist = sub.add_parser("distribution", help="impact bond distributions").add_subparsers(
        dest="distribution_command", required=True)
    rec = dist.add_parser("recompute", help="recompute a distribution from its recorded inputs and compare")
    rec.add_argument("distribution", help="the distribution's ID (global or numeric)")
    rec.set_defaults(func=cmd_distribution_recompute)


def print_investor_returns(report) -> None:
    """The evaluation report's impact bonds: what investors put in and got back, per contract and tranche."""
    from ledger import money as m
    if not report.investor_returns:
        return
    titles = {r.key: r.label for r in report.by_contract}

    def amount(units, cur):
        return f"{m.from_minor(units, cur).amount:,} {cur}".replace(",", " ")

    def opt(d, suffix=""):
        return "–" if d is None else f"{d}{suffix}"

    print("Impact bonds: what investors put in and got back (return capped; loss written off at closing)")
    print(f"  {'':<44} {'tranche':<12} {'put in':>20} {'got back':>20} {'return':>8} {'multiple':>8} {'loss':>20}")
    for cid, rows in report.investor_returns.items():
        for r in rows:
            label = titles.get(f"contract:{cid}", str(cid)) if r.tranche is None else ""
            print(f"  {label[:44]:<44} {(r.tranche or 'all').lower():<12} {amount(r.drawn_minor, r.currency):>20} "
                  f"{amount(r.returned_minor, r.currency):>20} {opt(r.return_percent, ' %'):>8} "
                  f"{opt(r.multiple):>8} {amount(r.loss_minor, r.currency):>20}")
    print()
