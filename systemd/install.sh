#!/usr/bin/env bash
# Installs the edge agent on a taxi gateway, idempotently (run it again to upgrade):
#   - a virtualenv in /opt/edge-agent with the agent from a checkout or from wheels,
#   - the system user (sysusers.d) and directories (tmpfiles.d),
#   - systemd-networkd files for can0/can1 and the edge-agent.service unit,
#   - /etc/edge-agent/agent.toml from the example, only if there is none yet.
#
# Usage: install.sh [--root DIR] [--no-start] [--no-deps] [--broker-cidr CIDR]... [SOURCE...]
#   SOURCE         a checkout of this repository (its protocol, daemon_kit and edge_agent
#                  are installed; default: the checkout this script is in), or .whl files
#   --root DIR     install under DIR instead of / (tests, staging); no systemctl calls.
#                  The virtualenv's scripts then name DIR in their #! lines.
#   --no-start     enable but do not (re)start anything
#   --no-deps      install only the agent package, not its dependencies
#   --broker-cidr  restrict the agent's IP traffic to localhost plus these networks
#                  (repeatable; writes edge-agent.service.d/ipaddress.conf)
# pip honours its usual environment, e.g. PIP_NO_INDEX=1 PIP_FIND_LINKS=/media/wheels
# for a depot without internet access.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
root=""
start=1
pip_deps=()
cidrs=()
sources=()

usage() { sed -n '9,19s/^# \{0,1\}//p' "$0"; }

while (($#)); do
    case $1 in
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --root=*) root=${1#--root=}; shift ;;
        --no-start) start=0; shift ;;
        --no-deps) pip_deps=(--no-deps); shift ;;
        --broker-cidr) cidrs+=("${2:?--broker-cidr needs an address or network}"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) sources+=("$1"); shift ;;
    esac
done
((${#sources[@]})) || sources=("$repo")
targets=()  # what pip installs: a checkout's three gateway parts, or the wheels given
for source in "${sources[@]}"; do
    if [[ -d $source && -f $source/edge_agent/pyproject.toml ]]; then
        targets+=("$source/protocol" "$source/daemon_kit" "$source/edge_agent")
    elif [[ -f $source && $source == *.whl ]]; then
        targets+=("$source")
    else
        echo "install.sh: not a checkout of this repository or a .whl: $source" >&2
        exit 2
    fi
done
if [[ -n $root ]]; then
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
elif [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: run as root (or use --root DIR)" >&2
    exit 1
fi

prefix=$root/opt/edge-agent
etc=$root/etc
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { echo "install.sh: $*"; }

# Copy only when the content differs, so a second run changes nothing.
put() {  # put MODE SRC DEST
    local mode=$1 src=$2 dest=$3
    if [[ -f $dest ]] && cmp -s "$src" "$dest"; then
        chmod "$mode" "$dest"
        return
    fi
    install -D -m "$mode" "$src" "$dest"
    log "wrote ${dest#"$root"}"
}

# 1. The virtualenv and the agent. pip leaves an already installed, identical version alone
#    unless the source is a tree, which it rebuilds (that is how an upgrade is done).
if [[ ! -x $prefix/bin/python ]]; then
    log "creating virtualenv ${prefix#"$root"}"
    python3 -m venv "$prefix"
fi
log "installing the agent from ${sources[*]}"
"$prefix/bin/python" -m pip install -q "${pip_deps[@]}" "${targets[@]}"
put 0644 "$repo/docs/deployment.md" "$prefix/share/doc/deployment.md"

# 2. Units, networkd, sysusers, tmpfiles.
put 0644 "$here/edge-agent.service" "$etc/systemd/system/edge-agent.service"
put 0644 "$here/80-can0.network" "$etc/systemd/network/80-can0.network"
put 0644 "$here/80-can1.network" "$etc/systemd/network/80-can1.network"
put 0644 "$here/sysusers.d/edge-agent.conf" "$etc/sysusers.d/edge-agent.conf"
put 0644 "$here/tmpfiles.d/edge-agent.conf" "$etc/tmpfiles.d/edge-agent.conf"

dropin=$etc/systemd/system/edge-agent.service.d/ipaddress.conf
if ((${#cidrs[@]})); then
    tmp=$(mktemp)
    {
        echo "# Written by install.sh --broker-cidr: the broker (and DNS) networks."
        echo "[Service]"
        echo "IPAddressDeny=any"
        echo "IPAddressAllow=localhost ${cidrs[*]}"
    } >"$tmp"
    put 0644 "$tmp" "$dropin"
    rm -f "$tmp"
fi

# 3. User, group and directories; the --root variants read the passwd/group under DIR.
systemd-sysusers --root="${root:-/}" "$etc/sysusers.d/edge-agent.conf"
systemd-tmpfiles --create --root="${root:-/}" "$etc/tmpfiles.d/edge-agent.conf"

# 4. The configuration: never overwrite what a technician has edited.
config=$etc/edge-agent/agent.toml
if [[ ! -e $config ]]; then
    install -m 0640 "$repo/examples/agent.toml" "$config"
    # Numeric gid from DIR's group file: the host may not know the group.
    gid=$(awk -F: '$1 == "edge-agent" { print $3 }' "$etc/group")
    chgrp "${gid:?edge-agent group missing}" "$config"
    log "wrote ${config#"$root"} from the example: set vehicle id, fleet and mqtt"
else
    log "kept existing ${config#"$root"}"
fi

# 5. Enable (and start). Nothing of this under --root: no running systemd there.
if [[ -n $root ]]; then
    log "done (--root: no systemctl calls)"
    exit 0
fi
systemctl daemon-reload
systemctl enable --quiet systemd-networkd.service edge-agent.service
if ((start)); then
    systemctl restart systemd-networkd.service
    systemctl restart edge-agent.service
    log "started; follow with: journalctl -u edge-agent -f"
else
    log "enabled, not started (--no-start)"
fi
