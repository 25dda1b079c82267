#!/usr/bin/env bash
# Set up, then run the whole test suite (unit, integration; GPU tests skip without CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -n 2 -q "$@"
