"""Fuzzing: thousands of generated queries and mutations from the real schema against the app.

No response may be a server error, no internal detail may leak, and the ledger must still
verify afterwards. Generated inputs are mostly nonsense (random IDs, strings with NUL
characters, huge numbers): each must come back as a userError or a GraphQL error.
"""
from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis_graphql import Mode, from_schema, mutations, nodes, queries
from strawberry.printer import print_schema

from api.graphql.schema import schema
from ledger import journal
from tests.ledger.test_calculations import approve, calc, case_a  # noqa: F401

# 1 000 queries + 1 000 mutations + 200 invalid documents on SQLite; PostgreSQL gets a
# smaller run for what only it refuses (NUL characters in text, integer ranges)
EXAMPLES = {"sqlite": int(os.environ.get("UTFALL_FUZZ_EXAMPLES", "1000")), "postgresql": 200}
LEAKS = re.compile(r"Traceback|File \"|sqlalchemy|psycopg|sqlite3|IntegrityError|OperationalError|line \d+, in")

SCALARS = {
    "Decimal": st.one_of(st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str), st.text(max_size=30))
    .map(nodes.String),
    "Date": st.one_of(st.dates().map(lambda d: d.isoformat()), st.text(max_size=12)).map(nodes.String),
    "DateTime": st.one_of(st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=30)).map(nodes.String),
}


def fuzz(api, strategy, tokens, count):
    seen = {"n": 0}

    @settings(max_examples=count, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(document=strategy, token=st.sampled_from(tokens))
    def one(document, token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = api.client.post("/graphql", json={"query": document}, headers=headers)
        seen["n"] += 1
        assert r.status_code < 500, (document, r.text)
        assert not LEAKS.search(r.text), (document, r.text)

    one()
    return seen["n"]


def test_generated_queries_and_mutations_never_break_the_service(api, db, backend, case_a):
    count = EXAMPLES[backend]
    approve(db, calc(db, case_a))
    sdl = print_schema(schema)
    tokens = [api.token(role) for role in ("FUND_MANAGER", "AUDITOR", "ADMIN")] + [
        api.token("PROVIDER", party_id=case_a["prov"].id), None]
    sent = fuzz(api, queries(sdl, custom_scalars=SCALARS), tokens, count)
    sent += fuzz(api, mutations(sdl, custom_scalars=SCALARS), tokens, count)
    sent += fuzz(api, from_schema(sdl, custom_scalars=SCALARS, mode=Mode.NEGATIVE), tokens, count // 5)
    assert sent >= 2 * count
    with db.reading() as s:
        assert journal.verify(s).ok
