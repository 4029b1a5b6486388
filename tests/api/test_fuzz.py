"""Fuzzing: thousands of generated queries and mutations from the real schema against the app.

No response may be a server error, "Unexpected error" or an internal detail, nothing may be
logged as an ERROR, and the ledger must still verify afterwards. Generated inputs are mostly
nonsense (random IDs, strings with NUL characters, huge numbers, the hostile values of issue
14): each must come back as a userError or a GraphQL error. At least 2 000 operations per
backend; the documents are generated once and sent to each backend.
"""
from __future__ import annotations

import functools
import logging
import os
import re

from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis_graphql import Mode, from_schema, mutations, nodes, queries
from strawberry.printer import print_schema

from api.graphql.schema import schema
from ledger import journal
from tests.ledger.test_calculations import approve, calc, case_a  # noqa: F401

# per backend: 1 000 queries + 1 000 mutations + 200 invalid documents (issue 14: at least
# 2 000 generated operations on each database, a few minutes at most each)
EXAMPLES = int(os.environ.get("UTFALL_FUZZ_EXAMPLES", "1000"))
LEAKS = re.compile(r"Traceback|File \"|sqlalchemy|psycopg|sqlite3|IntegrityError|OperationalError|line \d+, in")

# the hand-made hostile values of issue 14 beside generated ones: amounts past 64 bits, NaN,
# exponents, non-ASCII digits, JSON numbers where strings go, dates past the calendar's ends
HOSTILE_DECIMALS = ["92233720368547758.08", "90000000000000000.00", "999999999999999999.99", "-92233720368547758.08",
                    "NaN", "Infinity", "-Infinity", "1e3", "1,5", "١٢٣", "１２３", " 12", "0.000000000001", "-0"]
HOSTILE_DATES = ["2025-13-01", "2025-02-30", "0001-01-01", "9999-12-31", "０００１-01-01", "2025-1-1"]
HOSTILE_DATETIMES = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999Z",
                     "2026-01-01T12:00:00", "2026-01-01T25:00:00Z"]
SCALARS = {
    "Decimal": st.one_of(st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str).map(nodes.String),
                         st.text(max_size=30).map(nodes.String), st.sampled_from(HOSTILE_DECIMALS).map(nodes.String),
                         st.integers(min_value=-10**20, max_value=10**20).map(nodes.Int)),
    "Date": st.one_of(st.dates().map(lambda d: d.isoformat()), st.text(max_size=12), st.sampled_from(HOSTILE_DATES))
    .map(nodes.String),
    "DateTime": st.one_of(st.datetimes().map(lambda d: d.isoformat()),
                          st.text(max_size=30), st.sampled_from(HOSTILE_DATETIMES)).map(nodes.String),
}


def generate(strategy, count: int) -> list[str]:
    """`count` documents from a hypothesis-graphql strategy, the same ones every run (derandomized)."""
    out: list[str] = []

    @settings(max_examples=count, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(document=strategy)
    def collect(document):
        out.append(document)

    collect()
    return out


@functools.cache
def documents() -> tuple[str, ...]:
    """Generated once per test session and sent to every backend: generating is most of the cost
    (hypothesis-graphql takes tens of milliseconds a document), sending a few milliseconds."""
    sdl = print_schema(schema)
    return tuple(generate(queries(sdl, custom_scalars=SCALARS), EXAMPLES)
                 + generate(mutations(sdl, custom_scalars=SCALARS), EXAMPLES)
                 + generate(from_schema(sdl, custom_scalars=SCALARS, mode=Mode.NEGATIVE), EXAMPLES // 5))


def test_generated_queries_and_mutations_never_break_the_service(api, db, backend, case_a, caplog):
    caplog.set_level(logging.INFO)
    approve(db, calc(db, case_a))
    tokens = [api.token(role) for role in ("FUND_MANAGER", "AUDITOR", "ADMIN")] + [
        api.token("PROVIDER", party_id=case_a["prov"].id), None]
    sent = 0
    for i, document in enumerate(documents()):
        token = tokens[i % len(tokens)]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = api.client.post("/graphql", json={"query": document}, headers=headers)
        sent += 1
        assert r.status_code < 500, (document, r.text)
        assert not LEAKS.search(r.text), (document, r.text)
        assert "Unexpected error" not in r.text, (document, r.text)
    assert sent >= 2 * EXAMPLES >= 2000 or os.environ.get("UTFALL_FUZZ_EXAMPLES")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[:5]
    with db.reading() as s:
        assert journal.verify(s).ok
