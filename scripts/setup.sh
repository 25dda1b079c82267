#!/usr/bin/env bash
# Create .venv (if needed) and install dlopt with its test tools. Used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# Pin torch first: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 is the CPU build.
.venv/bin/python -m pip install -q "torch==2.13.0"
# The ray and mlflow extras too: their tests run in the default suite (about 30 s, 375 MB more).
.venv/bin/python -m pip install -q -e ".[dev,ray,mlflow]"
