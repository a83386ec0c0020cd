#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, generated files current, promtool/amtool checks,
# then pytest including the integration and end-to-end tests (which may not skip here).
set -euo pipefail
cd "$(dirname "$0")/.."
WSINFRA_CONTAINERS=1 scripts/bootstrap.sh
PY=.venv/bin/python
# Where bootstrap had to give PostgreSQL a password, the tests use it too.
if [ -s .run/secrets/postgres_password ]; then PGPASSWORD=$(cat .run/secrets/postgres_password); export PGPASSWORD; fi

echo "== lint"
$PY -m ruff check .
$PY -m ruff format --check .
$PY -m mypy

echo "== generated files are current"
$PY -m alert_rules build --check
$PY -m compose.build --check
$PY -m dashboards build --check

echo "== promtool / amtool"
promtool check rules alert_rules/generated/*.yml
promtool test rules tests/rules/*.test.yaml
amtool check-config alertmanager/alertmanager.yml

echo "== pytest"
$PY -m pytest --require-integration "$@"
