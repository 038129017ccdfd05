#!/usr/bin/env bash
# Rebuilds the operator dashboard bundle (frontend/ -> cloud_collector/dashboard/static/,
# which is committed: running the collector needs no Node). Needs node and npm.
set -euo pipefail
cd "$(dirname "$0")/../frontend"
npm ci --no-audit --no-fund
node build.mjs
