"""The load benchmark (ops/bench/load.py) runs end to end on a small plan and finds no failure.

A real `utfall serve` on SQLite, the generator in its own process: a burst of 30 signed-in
clients, and 20 slow bodies beside 2 normal clients until the server's 10 s body timeout has
answered every slow one with 408. The full scenarios are `python -m ops.bench.load`.
"""
from __future__ import annotations

from ops.bench import load

PLAN = [{"name": "burst of 30 signed-in clients", "scenario": "burst", "clients": 30, "rounds": 2},
        {"name": "2 clients beside 20 slow bodies", "scenario": "slow", "slow": 20, "normal": 2, "seconds": 2.0}]


def test_the_load_benchmark_finds_no_5xx_no_timeout_and_every_request_logged():
    results = load.run(backends=("sqlite",), plan=PLAN, log=lambda _m: None)
    assert len(results) == 2
    for r in results:
        assert not r["failed"], r
        assert r["server_errors"] == 0 and r["timeouts"] == 0 and r["logged"] == r["answered"]
    burst, slow = results
    assert burst["requests"] == 60 and burst["ok"] == 60
    assert slow["slow_408"] == 20 and slow["requests"] > 0
    assert "burst of 30" in load.table(results)
