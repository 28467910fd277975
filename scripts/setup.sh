#!/usr/bin/env bash
# Set up a development/run environment: system packages, the virtual environment in .venv with corral
# installed (editable, with the dev tools), and `corral` linked onto the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

if [[ $(id -u) -eq 0 ]]; then
  ln -sf "$PWD/.venv/bin/corral" /usr/local/bin/corral
fi
echo "corral: set up ($(.venv/bin/corral --version 2>/dev/null || echo 'corral not importable'))"
