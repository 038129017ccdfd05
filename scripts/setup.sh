#!/usr/bin/env bash
# Installs everything the project needs on a Debian 12 machine, idempotently:
# Debian packages (as root), a virtualenv in .venv, and the project with its test tools.
# Safe to run again; it does only what is missing. Its functions can be sourced on their own
# (`source scripts/setup.sh`), which runs nothing.
set -euo pipefail

DEBIAN_PACKAGES=(python3 python3-venv python3-dev gcc gpsd mosquitto postgresql chromium systemd openssl faketime)
# GDAL's command-line tools: the OGC API test reads the collector as a GIS client does.
DEBIAN_PACKAGES+=(gdal-bin)
# Node.js runs the dashboard's browser test (and rebuilds the bundle); a node already on
# the PATH (e.g. a newer one from another source) is used as it is.
command -v node >/dev/null || DEBIAN_PACKAGES+=(nodejs)
command -v npm >/dev/null || DEBIAN_PACKAGES+=(npm)

# Package -> the system-wide services it brings, which tests and the demo do not use (they
# start their own broker, database and gpsd).
declare -A PACKAGE_SERVICES=(
    [gpsd]="gpsd.socket gpsd.service"
    [mosquitto]="mosquitto.service"
    [postgresql]="postgresql.service"
)
DPKG_LOCKS=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock)
LOCK_TIMEOUT_S=${SETUP_LOCK_TIMEOUT_S:-900}
LOCK_POLL_S=${SETUP_LOCK_POLL_S:-5}

# Waits, saying so, while another apt or dpkg run (unattended upgrades on a fresh machine)
# holds the package lock; without fuser, apt-get's own lock timeout below does the waiting.
wait_for_dpkg_lock() {
    command -v fuser >/dev/null || return 0
    local waited=0
    while fuser "${DPKG_LOCKS[@]}" >/dev/null 2>&1; do
        if ((waited >= LOCK_TIMEOUT_S)); then
            echo "setup: the dpkg lock is still held after ${waited} s by another apt or dpkg run; try again when it has finished" >&2
            return 1
        fi
        if ((waited % 30 == 0)); then
            echo "setup: waiting for the dpkg lock, held by another apt or dpkg run (unattended upgrades?) (${waited} s so far)"
        fi
        sleep "$LOCK_POLL_S"
        waited=$((waited + LOCK_POLL_S))
    done
}

missing_debian_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
    done
}

# Only services of packages installed just now: one that was there before may be in use.
disable_new_services() {
    local pkg svc
    for pkg in "$@"; do
        [[ -n ${PACKAGE_SERVICES[$pkg]:-} ]] || continue
        for svc in ${PACKAGE_SERVICES[$pkg]}; do
            echo "setup: disabling $svc (installed just now by this script; tests start their own)"
            systemctl disable --now "$svc" >/dev/null 2>&1 || true
        done
    done
}

install_debian_packages() {
    export DEBIAN_FRONTEND=noninteractive
    local apt_opts=(-q -o DPkg::Lock::Timeout="$LOCK_TIMEOUT_S")
    echo "setup: installing Debian packages: $*"
    wait_for_dpkg_lock
    echo "setup: apt-get update"
    apt-get "${apt_opts[@]}" update >/dev/null
    wait_for_dpkg_lock
    # One line a package as it is set up, instead of a silent minute.
    apt-get "${apt_opts[@]}" install -y --no-install-recommends "$@" |
        sed -u -n 's/^Setting up \([^ ]*\).*/setup:   set up \1/p'
    disable_new_services "$@"
}

if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
    return 0  # sourced for its functions
fi
cd "$(dirname "$0")/.."

mapfile -t missing < <(missing_debian_packages "${DEBIAN_PACKAGES[@]}")
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
        exit 1
    fi
    install_debian_packages "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    echo "setup: creating virtualenv .venv"
    "$PYTHON" -m venv .venv
fi

# The five distributions, editable, and the test tools; again only when a dependency list
# changed.
PARTS=(protocol daemon_kit edge_agent cloud_collector fleet_sim)
stamp=.venv/.installed-$(cat pyproject.toml "${PARTS[@]/%//pyproject.toml}" | sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
    echo "setup: installing Python packages (${PARTS[*]} and the test tools)"
    .venv/bin/python -m pip install -q --upgrade pip
    # A checkout from before the split had one distribution for everything.
    .venv/bin/python -m pip uninstall -q -y taxi-adas-ingest 2>/dev/null || true
    editable=()
    # The development install reads MDF4 recordings too (the edge agent's mdf extra) and
    # exports GeoParquet (the collector's export extra); the
    # gateway's wheels below, and the packaging test's install from them, stay without it.
    for part in "${PARTS[@]}"; do
        extra=""
        [[ $part == edge_agent ]] && extra="[mdf]"
        [[ $part == cloud_collector ]] && extra="[export]"
        editable+=(-e "./$part$extra")
    done
    # The build backend warns at length that data directories look like packages; they are
    # package data (DBCs, migrations, the dashboard bundle), listed in each pyproject.toml.
    # One line a package pip fetches or builds; its errors still reach stderr.
    PYTHONWARNINGS=ignore .venv/bin/python -m pip install --progress-bar off "${editable[@]}" --group test |
        sed -u -n -e 's/^Collecting \([^ ]*\).*/setup:   collecting \1/p' -e 's/^Successfully installed/setup: installed/p'
    # Wheels of everything a gateway installs, so tests/integration/test_packaging.py can
    # install the edge agent into a clean virtualenv without reaching a package index.
    # Built from a copy: setuptools leaves build/ directories where it builds.
    echo "setup: building the gateway's wheels (.venv/wheelhouse)"
    rm -rf .venv/wheelhouse
    src=$(mktemp -d)
    cp -r protocol daemon_kit edge_agent "$src"/
    PYTHONWARNINGS=ignore .venv/bin/python -m pip wheel -q -w .venv/wheelhouse \
        "$src"/protocol "$src"/daemon_kit "$src"/edge_agent
    rm -rf "$src"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
