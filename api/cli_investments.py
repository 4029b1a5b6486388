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
