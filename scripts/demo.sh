#!/usr/bin/env bash
# Set up, then run dlopt's main job on the bundled digits CNN sample.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/dlopt export models/digits_cnn/model.py:create_model \
  --weights models/digits_cnn/weights.pt -o out/digits_cnn
