#!/usr/bin/env bash
# The whole test suite (unit tests on a tiny in-process BERT, integration tests on the packaged model).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# Two worker processes (one torch thread each, see tests/conftest.py); a test file stays on one worker, so
# the files that share a cached teacher never train it twice at once. BERTCOMPRESS_TEST_WORKERS=0: serial.
BERTCOMPRESS_QUIET=1 .venv/bin/python -m pytest -q -n "${BERTCOMPRESS_TEST_WORKERS:-2}" --dist loadfile "$@"
