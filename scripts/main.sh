#!/usr/bin/env bash
# The main job on the embedded default: packaged MiniLM + Rotten Tomatoes, default recipes, report in runs/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/bertcompress run "$@"
