#!/usr/bin/env bash
# The main job on embedded defaults: decode the bundled fixture drive (camera + vehicle CAN)
# and print every event it contains, one JSON object per line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/edge-agent decode hw_fixtures/drives/drive.log "$@"
