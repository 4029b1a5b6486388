"""An HTTP client on the real ASGI app, bound to the test's rolled-back database."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from ledger import tokens
from ledger.access import SYSTEM


class Api:
    """Posts GraphQL documents as a given bearer token and returns the decoded JSON."""

    def __init__(self, client: TestClient, db):
        self.client = client
        self.db = db

    def token(self, role: str, name: str | None = None, party_id: int | None = None) -> str:
        with self.db.uow() as uow:
            issued = tokens.create_token(uow, actor=SYSTEM, name=name or f"{role.lower()} person", role=role,
                                         party_id=party_id)
            uow.commit()
        return issued.token

    def post(self, query: str, variables: dict | None = None, token: str | None = None, expect_status: int = 200) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
        assert r.status_code == expect_status, r.text
        return r.json()

    def ok(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        body = self.post(query, variables, token)
        assert "errors" not in body, body["errors"]
        return body["data"]


@pytest.fixture
def api(db, settings):
    app = create_app(settings, db, workers=2)
    with TestClient(app) as client:
        yield Api(client, db)
