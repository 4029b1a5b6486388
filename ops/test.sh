#!/usr/bin/env bash
# Installs Utfall with its test dependencies into .venv and runs the whole suite on SQLite
# and on PostgreSQL (127.0.0.1:5432, user postgres; override with UTFALL_TEST_PG).
# Extra arguments go to pytest, e.g. `ops/test.sh -k journal`.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"

# PostgreSQL: start the local cluster if it is installed and down; under CI=true the tests
# themselves fail when it cannot be reached (never a silent skip).
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 20); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  fi
fi

exec .venv/bin/python -m pytest "$@"
