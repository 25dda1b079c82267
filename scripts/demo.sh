#!/usr/bin/env bash
# Set up, then run dlopt's main job on the bundled digits CNN sample.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/dlopt gate models/digits_cnn/dlopt.toml
