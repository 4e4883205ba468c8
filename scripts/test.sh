#!/usr/bin/env bash
# The whole test suite (unit tests on a tiny in-process BERT, integration tests on the packaged model).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
BERTCOMPRESS_QUIET=1 .venv/bin/python -m pytest -q "$@"
