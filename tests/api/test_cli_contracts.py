"""`utfall forecast` and `utfall contracts close-due` on a real SQLite file with the demo fund."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(env, *args):
    done = subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_forecast_prints_periods_and_fiscal_year_totals_and_close_due_closes_what_is_over(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'utfall.db'}", "UTFALL_ENV": "development"}
    env.pop("UTFALL_SECRET", None)
    run(env, "demo")
    # when
    out = run(env, "forecast")
    # then each payer of the scheduled contracts has a line per half-year, and totals per fiscal year follow
    assert "Region Västerbotten" in out and "2027-07-01..2027-12-31" in out
    assert "Totals per fiscal year" in out and "2027 SEK" in out
    # nothing is due to close today; long after the last claim window everything open is closed
    assert run(env, "contracts", "close-due").strip().endswith("0 contract(s) closed")
    closed = run(env, "contracts", "close-due", "--today", "2029-01-01")
    assert closed.strip().endswith("2 contract(s) closed")
    assert "maximum" in run(env, "forecast") and "Region" not in run(env, "forecast").split("Totals")[0]
