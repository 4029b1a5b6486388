"""Every kind of transaction the ledger can hold has a value in the API's TransactionKind enum:
a kind the enum lacks would make every query touching such a transaction fail."""
import re
from pathlib import Path

from api.graphql.ledger import TransactionKind

ROOT = Path(__file__).resolve().parents[2]


def _kinds_posted() -> set[str]:
    kinds = set()
    for path in [*ROOT.joinpath("ledger").rglob("*.py"), *ROOT.joinpath("migrations").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        # kind="X" given to a call that posts (journal.post, reverse, the commitment postings);
        # {"kind": "X"} in migrations that post
        for found in re.finditer(r'kind="([A-Z_]+)"', text):
            calls = re.findall(r'(\w+)\(', text[max(0, found.start() - 400):found.start()])
            if calls and calls[-1] in {"post", "_recommit", "post_adjustment"}:
                kinds.add(found.group(1))
        kinds |= set(re.findall(r'"kind": "([A-Z_]+)"', text)) if "ledger_transactions" in text or "_head" in text else set()
        kinds |= set(re.findall(r'^[A-Z_]*KIND[A-Z_]* = "([A-Z_]+)"', text, flags=re.M))
    return kinds


def test_every_posted_kind_is_in_the_enum():
    posted = _kinds_posted()
    assert {"PAYOUT", "PAYMENT", "REVERSAL", "COMMITMENT_RELEASE", "COMMITMENT_MIGRATION"} <= posted  # the scan finds what it should
    assert posted <= {k.value for k in TransactionKind}, posted - {k.value for k in TransactionKind}
