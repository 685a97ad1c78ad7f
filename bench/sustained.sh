#!/usr/bin/env bash
# Sustained load on a fresh hexad cluster: tpcb-like runs back to back, one
# line per run, so a figure that holds only while the store is small shows.
# bench/bench.sh measures each workload for a few seconds on a fresh
# cluster; this shows what minutes of load do (bench/RESULTS.md
# "Sustained load").
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${HEXAD_BUILD:-$REPO/build}
runs=5 interval=30 clients=8 scale=10 base_port=25100 keep=0

usage() {
    cat <<EOF
Usage: bench/sustained.sh [--runs N] [--interval S] [--clients C] [--scale N]
                          [--base-port P] [--keep]

Starts a fresh hexad cluster in a temp dir (storage ports P+1..P+9, writer
on P+200), fills the pgbench tables, then runs pgbench tpcb-like
(-n -M simple) N times for S seconds each, back to back, and prints per
run: tps, the storage nodes' CPU ms per transaction on their event-loop
threads and on RocksDB's flush and compaction threads, the compute node's,
and the disk one storage node uses. Stops the cluster by pid at the end.

  --runs N         runs (default $runs)
  --interval S     seconds per run (default $interval)
  --clients C      pgbench clients (default $clients)
  --scale N        pgbench scale (default $scale)
  --base-port P    first port (default $base_port)
  --keep           keep the temp dir (it is kept anyway when the run fails)
  --help           show this help

Binaries come from \$HEXAD_BUILD (default $BUILD, the build './hexad up'
makes).
EOF
}
die() { echo "sustained: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --keep) keep=1; shift ;;
        --runs|--interval|--clients|--scale|--base-port)
            [ $# -ge 2 ] || die "$1 needs a value; see --help"
            [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge 1 ] || die "$1 needs a positive number (got '$2')"
            case "$1" in
                --runs) runs=$2 ;;
                --interval) interval=$2 ;;
                --clients) clients=$2 ;;
                --scale) scale=$2 ;;
                --base-port) base_port=$2 ;;
            esac
            shift 2 ;;
        *) die "unknown argument '$1'; see --help" ;;
    esac
done
command -v pgbench >/dev/null || die "pgbench is not installed; run 'bash deploy/install-deps.sh'"
[ -x "$BUILD/storage-node/hexad-storage" ] || die "$BUILD has no hexad-storage; build it first (./hexad up builds it, or set HEXAD_BUILD)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hexad-sustained.XXXXXX")
DATA=$TMP/data
PG_PORT=$((base_port + 200))
started=0
# On failure the temp dir stays: the message names a log in it.
cleanup() {
    local rc=$?
    [ "$started" -eq 0 ] || HEXAD_BUILD=$BUILD "$REPO/hexad" down --data "$DATA" >/dev/null 2>&1 || true
    if [ "$keep" -eq 1 ] || [ "$rc" -ne 0 ]; then echo "kept $TMP"; else rm -rf -- "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$DATA"
bash "$REPO/deploy/local/gen-cluster.sh" --data "$DATA" --base-port "$base_port" \
    --pg-port "$PG_PORT" --out "$DATA/cluster.conf"
started=1
HEXAD_BUILD=$BUILD "$REPO/hexad" up --data "$DATA" >"$TMP/up.log" 2>&1 ||
    die "starting the cluster failed; see $TMP/up.log"
echo "filling the pgbench tables (scale $scale)"
HEXAD_BUILD=$BUILD "$REPO/hexad" bench-init --data "$DATA" --scale "$scale" >"$TMP/init.log" 2>&1 ||
    die "bench-init failed; see $TMP/init.log"

# CPU ticks of the storage nodes' threads: "EVENT_LOOP ROCKSDB" (RocksDB
# names its flush and compaction threads rocksdb:high / rocksdb:low; the
# rest are hexad-storage's own).
storage_ticks() {
    local p t
    for p in $(cat "$DATA"/run/s*.pid); do
        for t in /proc/"$p"/task/*; do
            # A thread may end between the glob and the read.
            { echo "$(cat "$t/comm") $(cut -d' ' -f14,15 "$t/stat")"; } 2>/dev/null || true
        done
    done | awk '{ if ($1 ~ /^rocksdb/) r += $2 + $3; else e += $2 + $3 } END { printf "%d %d\n", e, r }'
}
compute_ticks() { cut -d' ' -f14,15 "/proc/$(cat "$DATA/run/w1.pid")/stat" | awk '{ print $1 + $2 }'; }
hz=$(getconf CLK_TCK)
per_txn() { awk -v d="$1" -v n="$2" -v hz="$hz" 'BEGIN { printf "%.3f", (n > 0 ? d * 1000 / hz / n : 0) }'; }

echo "CPU ms per transaction: storage event loops, RocksDB flush/compaction threads, writer"
printf '%-4s %8s %10s %12s %12s %10s\n' run tps loop rocksdb compute "s1 disk"
for r in $(seq "$runs"); do
    read -r e0 r0 <<<"$(storage_ticks)"
    w0=$(compute_ticks)
    out=$(pgbench -n -M simple -h 127.0.0.1 -p "$PG_PORT" -U hexad -c "$clients" -j 2 \
        -T "$interval" hexad 2>&1) || die "pgbench failed: $out"
    read -r e1 r1 <<<"$(storage_ticks)"
    w1=$(compute_ticks)
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    printf '%-4s %8.0f %10s %12s %12s %9sM\n' "$r" "$tps" "$(per_txn $((e1 - e0)) "$n")" \
        "$(per_txn $((r1 - r0)) "$n")" "$(per_txn $((w1 - w0)) "$n")" "$(du -sm "$DATA/s1" | cut -f1)"
done
