#!/usr/bin/env bash
# The full learning run of examples/python/nsa_recall.py: NSA against window-only attention on
# long-range associative recall (about ten minutes on 2 cores). Needs the opennsa package in .venv
# (bash scripts/test-python.sh builds it); installs matplotlib into .venv for the plot.
#
#   bash examples/python/run_nsa_recall.sh [extra nsa_recall.py arguments]
#
# Writes docs/images/nsa_recall.png and build-python/nsa_recall.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}
"$py" -c "import opennsa" 2>/dev/null || { echo "opennsa is not installed in $py: run bash scripts/test-python.sh"; exit 1; }
"$py" -c "import matplotlib" 2>/dev/null || "$py" -m pip install matplotlib
mkdir -p docs/images build-python
OPENNSA_NUM_THREADS=2 "$py" examples/python/nsa_recall.py --plot docs/images/nsa_recall.png \
  --json build-python/nsa_recall.json "$@"
