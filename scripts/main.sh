#!/usr/bin/env bash
# The main job on the embedded default: packaged MiniLM + Rotten Tomatoes, the fastest model within 1 point
# of the teacher (a short search: `optimize --quick --time-budget 6m`), frontier report in runs/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/bertcompress optimize --quick --time-budget 6m "$@"
