#!/usr/bin/env bash
# Set up a virtual environment and run the demo workflow (workflows/demo.json).
# It prints a live view on a terminal and a summary at the end; add --stay to keep the
# web view open after the run (Ctrl-C ends it). Other flags go to ccworkflow too.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q -e .
exec .venv/bin/ccworkflow workflows/demo.json --state .cryoflow/demo --fresh --report demo-report.json "$@"
