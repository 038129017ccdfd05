#!/usr/bin/env bash
# Mints the fleet's TLS material with openssl, idempotently (existing files are kept):
#   fleet-ca.pem/.key        the fleet CA (the broker's cafile, every client's tls_ca)
#   broker.pem/.key          the broker's server certificate (SAN: 127.0.0.1, localhost
#                            and $BROKER_SAN, e.g. BROKER_SAN="DNS:mqtt.example.net")
#   collector-1.pem/.key     a collector's client certificate ($COLLECTOR_CN, no "/")
#   FLEET/VEHICLE.pem/.key   one client certificate per vehicle, CN = "FLEET/VEHICLE":
#                            mosquitto takes the CN as username and client id, and the
#                            ACL pattern fleet/%u/... pins the vehicle to its own fleet
# and, for tests of the broker's identity checks:
#   --expired FLEET/VEHICLE  expired/FLEET/VEHICLE.pem/.key: valid signature, validity in
#                            the past
#   --other-ca FLEET/VEHICLE other-ca/FLEET/VEHICLE.pem/.key, signed by other-ca/ca.pem
#                            (not trusted)
#
# Usage: mint-certs.sh OUTDIR [FLEET/VEHICLE...] [--expired FLEET/VEHICLE]...
#                             [--other-ca FLEET/VEHICLE]...
# Keys are written mode 0600: give the broker's key to the mosquitto user, a vehicle's to
# the edge-agent group, as docs/deployment.md shows.
set -euo pipefail

usage() { sed -n '2,19s/^# \{0,1\}//p' "$0"; }

out=""
vehicles=()
expired=()
other=()
while (($#)); do
    case $1 in
        --expired) expired+=("${2:?--expired needs FLEET/VEHICLE}"); shift 2 ;;
        --other-ca) other+=("${2:?--other-ca needs FLEET/VEHICLE}"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "mint-certs.sh: unknown option $1" >&2; exit 2 ;;
        *) if [[ -z $out ]]; then out=$1; else vehicles+=("$1"); fi; shift ;;
    esac
done
if [[ -z $out ]]; then
    usage >&2
    exit 2
fi

CA_DAYS=${CA_DAYS:-3650}
CERT_DAYS=${CERT_DAYS:-825}
COLLECTOR_CN=${COLLECTOR_CN:-collector-1}
umask 077
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Same rule as the protocol's ids: the CN becomes an MQTT username, client id and topic
# levels, so "+" and "#" must never get into it, and "/" only as the one separator of a
# vehicle's "FLEET/VEHICLE". A collector's CN has no "/", so no vehicle certificate can
# ever carry a collector's username or client id.
check_id() {
    if [[ ! $1 =~ ^[A-Za-z0-9_-]{1,64}$ ]]; then
        echo "mint-certs.sh: '$1' is not a valid id ([A-Za-z0-9_-], 1-64)" >&2
        exit 2
    fi
}

check_vehicle() {
    if [[ ! $1 =~ ^[A-Za-z0-9_-]{1,64}/[A-Za-z0-9_-]{1,64}$ ]]; then
        echo "mint-certs.sh: '$1' is not FLEET/VEHICLE (each [A-Za-z0-9_-], 1-64)" >&2
        exit 2
    fi
    case ${1%%/*} in
        expired|other-ca)
            echo "mint-certs.sh: fleet '${1%%/*}' would mix with the test directories" >&2
            exit 2 ;;
    esac
}

# openssl's -subj treats "/" as the separator of name components; escaped, it stays in
# the CN.
subj() { printf '/CN=%s' "${1//\//\\/}"; }

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() {  # ca DIR CN: a self-signed CA in DIR/ca.pem (or the fleet CA at the top level)
    local key=$1.key pem=$1.pem
    [[ -f $pem ]] && return
    newkey "$key"
    openssl req -x509 -new -key "$key" -out "$pem" -days "$CA_DAYS" -sha256 -subj "$(subj "$2")" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    chmod 0644 "$pem"
    echo "mint-certs.sh: minted CA $pem"
}

# leaf CA_BASE OUT_BASE CN USAGE [SAN]: a certificate signed by CA_BASE.pem/.key.
leaf() {
    local cabase=$1 base=$2 cn=$3 usage=$4 san=${5:-}
    [[ -f $base.pem ]] && return
    mkdir -p "$(dirname "$base")"
    newkey "$base.key"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=$usage"
        if [[ -n $san ]]; then echo "subjectAltName=$san"; fi
    } >"$tmp/ext"
    openssl req -new -key "$base.key" -subj "$(subj "$cn")" -out "$tmp/req.csr"
    openssl x509 -req -in "$tmp/req.csr" -CA "$cabase.pem" -CAkey "$cabase.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$CERT_DAYS" -sha256 \
        -extfile "$tmp/ext" -out "$base.pem" 2>/dev/null
    chmod 0644 "$base.pem"
    echo "mint-certs.sh: minted $base.pem (CN=$cn)"
}

# An already expired certificate: openssl 3.0's x509 cannot take a start date, and -days
# cannot be negative, but "openssl ca" accepts explicit -startdate/-enddate.
expired_leaf() {
    local base=$1 cn=$2 d=$tmp/expired-ca
    [[ -f $base.pem ]] && return
    mkdir -p "$d/new" "$(dirname "$base")"
    : >"$d/index.txt"
    openssl rand -hex 16 >"$d/serial"
    cat >"$d/ca.cnf" <<EOF
[ca]
default_ca = fleet
[fleet]
database = $d/index.txt
new_certs_dir = $d/new
serial = $d/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
EOF
    newkey "$base.key"
    openssl req -new -key "$base.key" -subj "$(subj "$cn")" -out "$d/req.csr"
    openssl ca -batch -notext -config "$d/ca.cnf" -extensions client \
        -cert "$out/fleet-ca.pem" -keyfile "$out/fleet-ca.key" -in "$d/req.csr" \
        -startdate 20200101000000Z -enddate 20200201000000Z -out "$base.pem" 2>/dev/null
    chmod 0644 "$base.pem"
    echo "mint-certs.sh: minted $base.pem (CN=$cn, expired 2020-02-01)"
}

check_id "$COLLECTOR_CN"
for v in "${vehicles[@]}" "${expired[@]}" "${other[@]}"; do
    check_vehicle "$v"
done

ca "$out/fleet-ca" "Taxi fleet CA"
leaf "$out/fleet-ca" "$out/broker" broker serverAuth \
    "IP:127.0.0.1,DNS:localhost${BROKER_SAN:+,$BROKER_SAN}"
leaf "$out/fleet-ca" "$out/$COLLECTOR_CN" "$COLLECTOR_CN" clientAuth
for v in "${vehicles[@]}"; do
    leaf "$out/fleet-ca" "$out/$v" "$v" clientAuth
done
for v in "${expired[@]}"; do
    expired_leaf "$out/expired/$v" "$v"
done
if ((${#other[@]})); then
    mkdir -p "$out/other-ca"
    ca "$out/other-ca/ca" "Somebody else's CA"
    for v in "${other[@]}"; do
        leaf "$out/other-ca/ca" "$out/other-ca/$v" "$v" clientAuth
    done
fi
