#!/usr/bin/env bash
# Installs Utfall into .venv, migrates an SQLite database in the working directory, creates
# an admin token (printed) and serves GraphQL with GraphiQL at http://127.0.0.1:8000/graphql.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .

export UTFALL_ENV=${UTFALL_ENV:-development}
.venv/bin/utfall db upgrade
if .venv/bin/utfall demo --help >/dev/null 2>&1; then
  .venv/bin/utfall demo
else
  echo "Admin token (use as 'Authorization: Bearer <token>' in GraphiQL's headers):"
  .venv/bin/utfall token create --role ADMIN --name admin | tail -n1
fi
echo "utfall is in .venv/bin: run \`source .venv/bin/activate\` in another terminal to use it (utfall --help)."
exec .venv/bin/utfall serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
