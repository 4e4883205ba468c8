#!/usr/bin/env bash
# Create .venv and install bertcompress with its test and deployment extras; torch first, as the CPU build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install --quiet "torch==2.13.0"
.venv/bin/pip install --quiet -e ".[test,deploy]"
