#!/usr/bin/env bash
# Installs Utfall with its test dependencies into .venv and runs the whole suite on SQLite
# and on PostgreSQL (127.0.0.1:5432, user postgres; override with UTFALL_TEST_PG), and the
# browser tests in Debian's headless chromium (installed with apt-get when root).
# Extra arguments go to pytest, e.g. `ops/test.sh -k journal`.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Playwright drives Debian's chromium (tests/browser); it must never download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"

# The browser tests need /usr/bin/chromium: installed here when we are root with apt; otherwise
# they skip (and fail under CI=true, never a silent skip there).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation; \
  } >/dev/null 2>&1 || echo "ops/test.sh: could not install chromium; the browser tests will skip" >&2
fi

# PostgreSQL: start the local cluster if it is installed and down; under CI=true the tests
# themselves fail when it cannot be reached (never a silent skip).
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 20); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  fi
fi

exec .venv/bin/python -m pytest "$@"
