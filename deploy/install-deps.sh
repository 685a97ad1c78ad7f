#!/usr/bin/env bash
# Installs the Debian packages hexad needs to build, test and run.
#
# Idempotent and quick when everything is present: it asks dpkg which
# packages are missing and runs `apt-get update` + `apt-get install` only
# for those. Uses sudo only when not root. Debian 12 (bookworm) is the
# reference system; nothing is fetched from anywhere but apt.
set -euo pipefail

PACKAGES=(
    build-essential meson ninja-build pkg-config
    libevent-dev libprotobuf-c-dev protobuf-c-compiler
    librocksdb-dev libsodium-dev libzstd-dev libcmocka-dev
    libsqlite3-dev sqlite3 libpq-dev postgresql-client
    jq python3 procps iproute2 curl
    postgresql   # only for pgbench: Debian 12 ships it with the server
)

usage() {
    cat <<EOF
Usage: deploy/install-deps.sh [--check] [--help]

Installs the Debian packages hexad needs (apt-get, noninteractive), running
'apt-get update' once first when something is missing. Does nothing when
all packages are already installed. Uses sudo when not run as root.

  --check   only list the missing packages; exit 1 if any are missing
  --help    show this help

Packages: ${PACKAGES[*]}
EOF
}

check_only=0
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        --check) check_only=1 ;;
        *) echo "install-deps.sh: unknown argument '$arg'; see --help" >&2; exit 2 ;;
    esac
done

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps.sh: dpkg-query/apt-get not found; this script supports Debian 12 (and derivatives)." >&2
    echo "Install these packages with your system's package manager instead: ${PACKAGES[*]}" >&2
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages are installed"
    exit 0
fi

echo "install-deps: missing: ${missing[*]}"
if [ "$check_only" -eq 1 ]; then
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-deps.sh: not root and sudo is not installed." >&2
        echo "Run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    SUDO=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
echo "+ ${SUDO[*]} apt-get update"
"${SUDO[@]}" apt-get update -q
echo "+ ${SUDO[*]} apt-get install -y --no-install-recommends ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done"
