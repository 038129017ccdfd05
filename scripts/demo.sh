#!/usr/bin/env bash
# The main job on embedded defaults: the whole product on this machine — a local mosquitto,
# the collector on SQLite with its operator dashboard, and five simulated taxis replaying
# fixture drives (one loses its uplink for a minute). Prints the dashboard's URL; Ctrl-C
# stops everything. Options: see `.venv/bin/python -m demo --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m demo "$@"
