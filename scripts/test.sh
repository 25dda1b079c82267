#!/usr/bin/env bash
# Set up, then run the whole test suite (unit, integration; GPU tests skip without CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# loadgroup: the tests that share a Ray cluster or a set of gate runs (xdist_group) stay on
# one worker, so each is started once.
.venv/bin/python -m pytest -n 2 --dist loadgroup -q "$@"
