"""Every GraphQL example in the README runs as written, in document order, as the role it names.

Each ```graphql block has the line `<!-- role: ROLE -->` right above it; FUND_MANAGER_2 is the
demo's second fund manager. A block marked `<!-- role: ROLE tested-elsewhere -->` is run by its
own section's test and skipped here. A `"<name>"` in a block is a value an earlier example
returned: PLACEHOLDERS says where, as the README says next to it.
"""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path

from ledger import demo
from tests.api.conftest import api  # noqa: F401  (the real ASGI app on the test database)

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^(?P<marker>[^\n]*)\n```graphql\n(?P<doc>.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!-- role: (?P<role>[A-Z_0-9]+)(?P<elsewhere> tested-elsewhere)? -->")
PLACEHOLDER = re.compile(r"<([a-z][a-z ]*)>")
# where each placeholder's value comes from: a path into the data of the newest earlier answer that has it
# (a dict in a path picks the list item with those fields)
PLACEHOLDERS = {
    "evidence id": ("evidence", "nodes", 0, "id"),
    "contract id": ("evidence", "nodes", 0, "contract", "id"),
    "payout id": ("calculatePayout", "payout", "id"),
    "bond contract id": ("funds", "nodes", 0, "contracts", "nodes", {"title": "Färre vårddygn i Malmö"}, "id"),
}


def examples() -> list[tuple[str, str, bool]]:
    """(role, document, tested elsewhere) for every ```graphql block, in the README's order."""
    text = README.read_text(encoding="utf-8")
    found = []
    for block in BLOCK.finditer(text):
        marker = MARKER.fullmatch(block["marker"].strip())
        assert marker, f"no <!-- role: ... --> line right above the example:\n{block['doc']}"
        found.append((marker["role"], block["doc"], bool(marker["elsewhere"])))
    assert len(found) == text.count("```graphql"), "a ```graphql block the pattern did not see"
    return found


def follow(data: object, path: tuple) -> object:
    for step in path:
        if isinstance(step, dict):  # the item of a list with these fields
            data = next((x for x in data if step.items() <= x.items()), None) if isinstance(data, list) else None
            if data is None:
                return None
            continue
        if isinstance(step, int):
            if not isinstance(data, list) or len(data) <= step:
                return None
        elif not isinstance(data, dict) or step not in data:
            return None
        data = data[step]
    return data


def fill(doc: str, answers: list[dict]) -> str:
    def value(match: re.Match) -> str:
        name = match[1]
        assert name in PLACEHOLDERS, f"<{name}> in the README: say where it comes from (and add it to PLACEHOLDERS)"
        for answer in reversed(answers):
            found = follow(answer, PLACEHOLDERS[name])
            if found is not None:
                return str(found)
        raise AssertionError(f"no earlier example returned <{name}>")
    return PLACEHOLDER.sub(value, doc)


def user_errors(data: object) -> list:
    if isinstance(data, dict):
        return [*data.get("userErrors", []), *(e for v in data.values() for e in user_errors(v))]
    if isinstance(data, list):
        return [e for v in data for e in user_errors(v)]
    return []


def tokens_by_role(issued) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in issued:
        role, n = t.role, 2
        while role in out:
            role, n = f"{t.role}_{n}", n + 1
        out[role] = t.token
    return out


def test_every_readme_example_runs_against_the_demo_as_its_role(api, db):
    tokens = tokens_by_role(demo.load(db, today=date(2026, 11, 30), secret=b"readme-examples-secret-0123456789"))
    answers: list[dict] = []
    ran = 0
    for role, doc, elsewhere in examples():
        if elsewhere:
            continue
        assert role in tokens, f"the demo prints no {role} token"
        body = api.post(fill(doc, answers), token=tokens[role])
        assert "errors" not in body, (role, doc, body["errors"])
        assert body["data"] and not user_errors(body["data"]), (role, doc, body["data"])
        answers.append(body["data"])
        ran += 1
        if "calculatePayout" in body["data"]:  # the walkthrough's promise: the late claim is paid
            assert Decimal(body["data"]["calculatePayout"]["payout"]["total"]["amount"]) > 0, body["data"]
    assert ran >= 9  # the walkthrough, every role
