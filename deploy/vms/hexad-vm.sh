#!/usr/bin/env bash
# Runs the nodes of one cluster file on a set of VMs over ssh.
# deploy/vms/README.md explains the set-up; --help lists the commands.
set -euo pipefail

PREFIX=${HEXAD_PREFIX:-/usr/local}
REMOTE_DIR=${HEXAD_REMOTE_DIR:-/var/lib/hexad}
SSH_USER=${HEXAD_SSH_USER:-}
SSH_OPTS=(-o BatchMode=yes -o ConnectTimeout=10)

usage() {
    cat <<EOF
Usage: deploy/vms/hexad-vm.sh --cluster FILE COMMAND [NODE...]

Runs the nodes of a cluster file on the hosts named in it: each node runs
on the host of its addr= (storage nodes: hexad-storage, compute nodes:
hexad-compute), started over ssh with --cluster $REMOTE_DIR/cluster.conf --id ID.
Without NODE, a command applies to every node in the file.

Commands:
  push        copy the cluster file to $REMOTE_DIR/cluster.conf on every host
  start       push, then start the nodes (log in $REMOTE_DIR/logs/ID.log, pid in
              $REMOTE_DIR/run/ID.pid); a node already running is left alone
  stop        SIGTERM the nodes by pid file, SIGKILL after 15 s
  kill        SIGKILL the nodes by pid file (a crash)
  status      is each node's process running (by pid file)
  hosts       print NODE HOST for every node (no ssh)

Options:
  --cluster FILE   the cluster file (required); its addresses must be the
                   hosts' reachable addresses, not 127.0.0.1
  --dry-run        print the ssh/scp commands instead of running them
  --help           show this help

Environment:
  HEXAD_PREFIX      where 'meson install' put the binaries (default /usr/local)
  HEXAD_REMOTE_DIR  cluster file, logs/ and run/ on each host (default /var/lib/hexad;
                    the ssh user must be able to write there and to the data= dirs)
  HEXAD_SSH_USER    ssh user (default: your ssh config)

The binaries must be installed at the same path on every host, e.g.:
  meson setup build --buildtype=release -Dtests=false --prefix=/usr/local
  ninja -C build && sudo meson install -C build
EOF
}

die() { echo "hexad-vm.sh: $*" >&2; exit 2; }

cluster="" dry=0 cmd="" nodes=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --cluster) [ $# -ge 2 ] || die "--cluster needs a FILE"; cluster=$2; shift 2 ;;
        --dry-run) dry=1; shift ;;
        -*) die "unknown option '$1'; see --help" ;;
        *) if [ -z "$cmd" ]; then cmd=$1; else nodes+=("$1"); fi; shift ;;
    esac
done
[ -n "$cluster" ] || die "--cluster FILE is required; see --help"
[ -f "$cluster" ] || die "cluster file '$cluster' does not exist"
[ -n "$cmd" ] || die "no command given; see --help"

# One line per node: KIND ID HOST DATA
all_nodes() {
    awk '{ sub(/#.*/, "") } $1 == "storage" || $1 == "compute" {
            id = ""; host = ""; data = "-"
            for (i = 2; i <= NF; i++) {
                if ($i ~ /^id=/) id = substr($i, 4)
                if ($i ~ /^addr=/) { host = substr($i, 6); sub(/:[0-9]+$/, "", host) }
                if ($i ~ /^data=/) data = substr($i, 6)
            }
            print $1, id, host, data
        }' "$cluster"
}

selected() {
    if [ "${#nodes[@]}" -eq 0 ]; then
        all_nodes
        return
    fi
    local n found
    for n in "${nodes[@]}"; do
        found=$(all_nodes | awk -v id="$n" '$2 == id')
        [ -n "$found" ] || die "no node '$n' in $cluster"
        echo "$found"
    done
}

target() { if [ -n "$SSH_USER" ]; then echo "$SSH_USER@$1"; else echo "$1"; fi; }

run() {  # command words...
    if [ "$dry" -eq 1 ]; then
        printf '%q ' "$@"
        echo
    else
        "$@"
    fi
}

on_host() {  # host script
    run ssh "${SSH_OPTS[@]}" "$(target "$1")" "$2"
}

push() {
    local h
    for h in $(selected | awk '{ print $3 }' | sort -u); do
        echo "== $h: $REMOTE_DIR/cluster.conf"
        on_host "$h" "mkdir -p $REMOTE_DIR"
        run scp "${SSH_OPTS[@]}" -q "$cluster" "$(target "$h"):$REMOTE_DIR/cluster.conf"
    done
}

# The remote shell snippets (POSIX sh). A pid file counts only while its
# process is a hexad daemon: a recycled pid is never signalled.
remote_alive() {  # id -> sh condition
    echo "[ -f $REMOTE_DIR/run/$1.pid ] && grep -q hexad- /proc/\$(cat $REMOTE_DIR/run/$1.pid)/cmdline 2>/dev/null"
}

remote_start() {  # kind id
    local bin=$PREFIX/bin/hexad-$1
    cat <<EOF
set -e
pf=$REMOTE_DIR/run/$2.pid
if $(remote_alive "$2"); then echo "$2 already running on \$(hostname) (pid \$(cat \$pf))"; exit 0; fi
[ -x $bin ] || { echo "$bin is missing on \$(hostname); install it there with meson install" >&2; exit 1; }
mkdir -p $REMOTE_DIR/run $REMOTE_DIR/logs
nohup setsid $bin --cluster $REMOTE_DIR/cluster.conf --id $2 </dev/null >>$REMOTE_DIR/logs/$2.log 2>&1 &
echo \$! >\$pf
echo "$2 started on \$(hostname) (pid \$!, log $REMOTE_DIR/logs/$2.log)"
EOF
}

remote_signal() {  # id signal
    cat <<EOF
pf=$REMOTE_DIR/run/$1.pid
if ! { $(remote_alive "$1"); }; then echo "$1 is not running on \$(hostname)"; rm -f \$pf; exit 0; fi
pid=\$(cat \$pf); kill -$2 \$pid
i=0; while kill -0 \$pid 2>/dev/null && [ \$i -lt 150 ]; do sleep 0.1; i=\$((i+1)); done
if kill -0 \$pid 2>/dev/null; then echo "$1 still running after 15 s: SIGKILL"; kill -KILL \$pid; fi
rm -f \$pf; echo "$1 stopped on \$(hostname) (SIG$2, pid \$pid)"
EOF
}

remote_status() {  # id
    cat <<EOF
pf=$REMOTE_DIR/run/$1.pid
if $(remote_alive "$1"); then echo "$1 running on \$(hostname) (pid \$(cat \$pf))"; else echo "$1 not running on \$(hostname)"; fi
EOF
}

case "$cmd" in
    hosts) selected | awk '{ print $2, $3 }' ;;
    push) push ;;
    start)
        push
        # storage first: a writer needs its storage nodes.
        selected | sort -k1,1r | while read -r kind id host _; do
            on_host "$host" "$(remote_start "$kind" "$id")" </dev/null
        done ;;
    stop|kill)
        sig=TERM
        [ "$cmd" = kill ] && sig=KILL
        selected | sort -k1,1 | while read -r _ id host _; do
            on_host "$host" "$(remote_signal "$id" "$sig")" </dev/null
        done ;;
    status)
        selected | while read -r _ id host _; do
            on_host "$host" "$(remote_status "$id")" </dev/null
        done ;;
    *) die "unknown command '$cmd'; see --help" ;;
esac
