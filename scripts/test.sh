#!/usr/bin/env bash
# The whole test suite: static checks, then every test (unit and integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# hw_fixtures, harness, tests, bench and demo are used from the checkout, never installed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== import contracts"; lint-imports
# TEST_WORKERS=N: pytest on N worker processes (pytest-xdist), a test module's tests on one
# worker (module fixtures are built once); each worker starts its own session fixtures.
workers=()
if [[ -n "${TEST_WORKERS:-}" && "${TEST_WORKERS}" != 1 ]]; then
    workers=(-n "$TEST_WORKERS" --dist loadfile)
fi
echo "== pytest"; pytest "${workers[@]}" "$@"
