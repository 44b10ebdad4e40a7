#!/usr/bin/env bash
# Set up a virtual environment and run the demo workflow on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q -e .
exec .venv/bin/ccworkflow workflows/demo.json --state .cryoflow/demo --fresh --report demo-report.json "$@"
