#!/usr/bin/env bash
# Set up a virtual environment and run every check: ruff, mypy, the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e '.[test]'
.venv/bin/ruff check cryoflow tests bench
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
