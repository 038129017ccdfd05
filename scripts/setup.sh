#!/usr/bin/env bash
# Installs everything the project needs on a Debian 12 machine, idempotently:
# Debian packages (as root), a virtualenv in .venv, and the project with its test tools.
# Safe to run again; it does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(python3 python3-venv python3-dev gcc gpsd mosquitto postgresql chromium systemd openssl faketime)
# Node.js runs the dashboard's browser test (and rebuilds the bundle); a node already on
# the PATH (e.g. a newer one from another source) is used as it is.
command -v node >/dev/null || DEBIAN_PACKAGES+=(nodejs)
command -v npm >/dev/null || DEBIAN_PACKAGES+=(npm)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
        exit 1
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    # The packaged services are not wanted running system-wide: tests start their own.
    for svc in gpsd.socket gpsd.service mosquitto.service postgresql.service; do
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    echo "setup: creating virtualenv .venv"
    "$PYTHON" -m venv .venv
fi

# The four distributions, editable, and the test tools; again only when a dependency list
# changed.
PARTS=(protocol daemon_kit edge_agent cloud_collector)
stamp=.venv/.installed-$(cat pyproject.toml "${PARTS[@]/%//pyproject.toml}" | sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
    echo "setup: installing Python packages (${PARTS[*]} and the test tools)"
    .venv/bin/python -m pip install -q --upgrade pip
    # A checkout from before the split had one distribution for everything.
    .venv/bin/python -m pip uninstall -q -y taxi-adas-ingest 2>/dev/null || true
    editable=()
    # The development install reads MDF4 recordings too (the edge agent's mdf extra); the
    # gateway's wheels below, and the packaging test's install from them, stay without it.
    for part in "${PARTS[@]}"; do
        extra=""
        [[ $part == edge_agent ]] && extra="[mdf]"
        editable+=(-e "./$part$extra")
    done
    # The build backend warns at length that data directories look like packages; they are
    # package data (DBCs, migrations, the dashboard bundle), listed in each pyproject.toml.
    PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q "${editable[@]}" --group test
    # Wheels of everything a gateway installs, so tests/integration/test_packaging.py can
    # install the edge agent into a clean virtualenv without reaching a package index.
    # Built from a copy: setuptools leaves build/ directories where it builds.
    rm -rf .venv/wheelhouse
    src=$(mktemp -d)
    cp -r protocol daemon_kit edge_agent "$src"/
    PYTHONWARNINGS=ignore .venv/bin/python -m pip wheel -q -w .venv/wheelhouse \
        "$src"/protocol "$src"/daemon_kit "$src"/edge_agent
    rm -rf "$src"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
