#!/usr/bin/env bash
# The test command: set up, lint (ruff), type-check (mypy --strict), check the layer contract
# (import-linter), then run the whole test suite against the real parts.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff";          ruff check src tests benchmarks scripts
echo "== mypy";          mypy
echo "== import-linter"; lint-imports
echo "== pytest";        pytest -q -p no:cacheprovider "$@"
