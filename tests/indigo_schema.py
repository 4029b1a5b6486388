"""Checks an INDIGO export against the official 4.1.0 schemas and codelists in shared/.

CI lays the shared folder beside the clone (`<clone>/../shared/indigo-4.1.0`); without it the
tests skip, except under CI=true, where a missing copy is a failure.
"""
from __future__ import annotations

import csv
import json
import os
from functools import cache
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

INDIGO_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "indigo-4.1.0"


def require_indigo() -> Path:
    if not (INDIGO_DIR / "project.json").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the INDIGO 4.1.0 schemas are missing at {INDIGO_DIR}")
        pytest.skip(f"no INDIGO 4.1.0 schemas at {INDIGO_DIR}")
    return INDIGO_DIR


@cache
def schema(name: str) -> dict:
    return json.loads((require_indigo() / f"{name}.json").read_text(encoding="utf-8"))


@cache
def codelist(name: str) -> frozenset[str]:
    with open(require_indigo() / "codelists" / name, encoding="utf-8", newline="") as f:
        return frozenset(row[0] for i, row in enumerate(csv.reader(f)) if i and row)


def _deref(root: dict, node: dict) -> dict:
    while "$ref" in node:
        node = root["definitions"][node["$ref"].split("/")[-1]]
    return node


def codelist_problems(root: dict, node: dict, data, path: str = "") -> list[str]:
    """Values not in their codelist (the non-standard `codelist` keyword that validators ignore)."""
    node = _deref(root, node)
    out = []
    if "codelist" in node and isinstance(data, str) and data not in codelist(node["codelist"]):
        out.append(f"{path}: {data!r} is not in {node['codelist']}")
    if isinstance(data, dict):
        props = node.get("properties", {})
        for key, value in data.items():
            if key in props:
                out += codelist_problems(root, props[key], value, f"{path}/{key}")
    elif isinstance(data, list) and "items" in node:
        for i, value in enumerate(data):
            out += codelist_problems(root, node["items"], value, f"{path}/{i}")
    return out


def unknown_fields(root: dict, node: dict, data, path: str = "") -> list[str]:
    """Keys the schema does not define (it allows them, but the export should not invent any)."""
    node = _deref(root, node)
    out = []
    if isinstance(data, dict) and "properties" in node:
        for key, value in data.items():
            if key not in node["properties"]:
                out.append(f"{path}/{key}")
            else:
                out += unknown_fields(root, node["properties"][key], value, f"{path}/{key}")
    elif isinstance(data, list) and "items" in node:
        for i, value in enumerate(data):
            out += unknown_fields(root, node["items"], value, f"{path}/{i}")
    return out


def assert_valid_export(doc: dict) -> None:
    """The project, every organisation and the fund validate; codelists and cross-references hold."""
    for name, data in [("project", doc["project"]["data"]), ("fund", doc["fund"]["data"]),
                       *[("organisation", o["data"]) for o in doc["organisations"]]]:
        root = schema(name)
        errors = sorted(Draft7Validator(root).iter_errors(data), key=lambda e: list(e.path))
        assert not errors, [f"{name} {list(e.path)}: {e.message}" for e in errors]
        assert not codelist_problems(root, root, data), codelist_problems(root, root, data)
        assert not unknown_fields(root, root, data), unknown_fields(root, root, data)
    project = doc["project"]["data"]
    metrics = {m["id"] for m in project.get("outcome_metrics", [])}
    for key in ("outcome_pricings", "results", "outcome_payments"):
        for item in project.get(key, []):
            if "outcome_metric_id" in item:
                assert item["outcome_metric_id"]["value"] in metrics, (key, item)
    plans = {p["id"]["value"] for p in project.get("outcome_payment_plans", [])}
    for item in project.get("outcome_payments", []):
        if "outcome_payment_plan_id" in item:
            assert item["outcome_payment_plan_id"]["value"] in plans
    investments = {i["id"] for i in project.get("investments", [])}
    for item in project.get("transactions", []):
        if "investment_id" in item:
            assert item["investment_id"]["value"] in investments
    from ledger.publishing.indigo import referenced_organisations
    exported = {o["id"] for o in doc["organisations"]}
    assert referenced_organisations(project) | referenced_organisations(doc["fund"]["data"]) <= exported
    assert [f["id"] for f in project["outcome_funds"]] == [doc["fund"]["id"]]
