#!/usr/bin/env bash
# Recovery time of the writer (issue 6, item 3): from the start of the
# hexad-compute process to its first answered SQL query, after a SIGKILL,
# with a volume log of 10 thousand and of 1 million records.
#
# One local cluster (9 storage nodes, free ports, a temp dir), release
# build. A SQL table is made first (so that serving SQL means opening a
# real database); the log is then grown with `hexadctl load` (numbered
# page patches, one record each, on pages far past the database's, in PGs
# of their own). At each log size the writer is started and SIGKILLed
# RUNS times; each start is timed from fork to the first `SELECT count(*)`
# that returns the table's row count (psql, polled every 10 ms), and to
# its first acknowledged INSERT (which also waits for the recovery's
# truncation on a write quorum of every PG). Before each kill every member
# has applied the truncation, so that a start never waits for storage
# still busy with the previous start's truncation.
# Records are counted from hexadctl status (records received by every
# node since it started, / 6 copies).
#
# Usage: bench/recovery_time.sh [--runs N] [--sizes 10000,1000000]
# Environment: HEXAD_BUILD (default build-rel, else build) holds the
# release binaries (meson setup build-rel --buildtype=release).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=5 sizes=10000,1000000

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --runs) [ $# -ge 2 ] || { echo "--runs needs a number" >&2; exit 2; }; runs=$2; shift 2 ;;
        --sizes) [ $# -ge 2 ] || { echo "--sizes needs a list" >&2; exit 2; }; sizes=$2; shift 2 ;;
        *) echo "recovery_time.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive number" >&2; exit 2; }

BUILD=${HEXAD_BUILD:-}
if [ -z "$BUILD" ]; then
    BUILD=$REPO/build-rel
    [ -x "$BUILD/compute-node/hexad-compute" ] || BUILD=$REPO/build
fi
export HEXAD_STORAGE_BIN=$BUILD/storage-node/hexad-storage
export HEXADCTL_BIN=$BUILD/compute-node/hexadctl
export HEXAD_COMPUTE_BIN=$BUILD/compute-node/hexad-compute
export HEXAD_REPO=$REPO
# shellcheck source=tests/integration/lib.sh
. "$REPO/tests/integration/lib.sh"
hx_require_bins HEXAD_STORAGE_BIN HEXADCTL_BIN HEXAD_COMPUTE_BIN
for t in psql jq; do
    command -v "$t" >/dev/null || hx_fail "$t is not installed; run 'bash deploy/install-deps.sh'"
done

READY_DEADLINE_S=120
TABLE_ROWS=1000
LOAD_START=$((32768 * 4096)) # hexadctl load's page blocks far past the SQL database

hx_cluster_start --pg-pages 16384
HOST=127.0.0.1
PORT=$((HX_BASE_PORT + 200))
export PGHOST=$HOST PGPORT=$PORT PGUSER=hexad PGDATABASE=hexad PGCONNECT_TIMEOUT=5
COMPUTE_PID=

compute_start() {
    START_NO=$((${START_NO:-0} + 1))
    echo "--- start $START_NO" >>"$HX_LOGS/w1.log"
    "$HEXAD_COMPUTE_BIN" --cluster "$HX_CONF" --id w1 </dev/null >>"$HX_LOGS/w1.log" 2>&1 &
    COMPUTE_PID=$!
    disown "$COMPUTE_PID"
    hx_track_pid "$COMPUTE_PID"
}

compute_kill() {
    kill -KILL "$COMPUTE_PID"
    wait_until "! hx_pid_alive $COMPUTE_PID" 10 || hx_fail "hexad-compute survived SIGKILL"
}

serves() { [ "$(psql -X -A -t -c 'SELECT count(*) FROM t' 2>/dev/null)" = "$TABLE_ROWS" ]; }

# One timed start: START_MS = milliseconds from fork to the first right
# answer (no subshell: COMPUTE_PID must reach compute_kill).
timed_start() {
    local t0 t1
    t0=$(date +%s%N)
    compute_start
    wait_until "serves || ! hx_pid_alive $COMPUTE_PID" "$READY_DEADLINE_S" 0.01 ||
        hx_fail "hexad-compute did not serve SQL within ${READY_DEADLINE_S} s"
    t1=$(date +%s%N)
    hx_pid_alive "$COMPUTE_PID" || hx_fail "hexad-compute exited; see $HX_LOGS/w1.log"
    START_MS=$(( (t1 - t0) / 1000000 ))
    psql -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO w VALUES ($START_NO)" >/dev/null ||
        hx_fail "the first INSERT after start $START_NO failed"
    WRITE_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
    wait_until "truncated_everywhere" "$READY_DEADLINE_S" 0.05 ||
        hx_fail "start $START_NO: not every member applied the truncation within ${READY_DEADLINE_S} s"
}

# Every member of every PG acknowledged this start's truncation.
truncated_everywhere() {
    local n_pgs acks
    n_pgs=$(awk -v m="--- start $START_NO" '$0 == m { on = 1 } on && /recovery: epoch/ { print $(NF - 7) }' "$HX_LOGS/w1.log" | tail -1)
    acks=$(awk -v m="--- start $START_NO" '$0 == m { on = 1 } on && /applied the recovery truncation/' "$HX_LOGS/w1.log" | wc -l)
    [ -n "$n_pgs" ] && [ "$acks" -ge $((6 * n_pgs)) ]
}

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

records() {  # records written to the volume, from every node's counter
    hx_ctl status --json | jq '[.nodes[].records_received] | add / 6 | floor'
}

# The database: a table of TABLE_ROWS rows.
compute_start
wait_until "psql -X -q -c 'SELECT 1'" "$READY_DEADLINE_S" 0.05 || hx_fail "hexad-compute did not start"
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)" \
    -c "CREATE TABLE w (start INTEGER)" \
    -c "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $TABLE_ROWS) INSERT INTO t SELECT x, printf('row %d', x) FROM c" >/dev/null ||
    hx_fail "could not create the table"
compute_kill

loaded=0
printf '%-12s %-14s %-14s %s\n' "log_records" "sql_median_ms" "write_med_ms" "runs sql/write ms"
IFS=, read -r -a size_list <<<"$sizes"
for size in "${size_list[@]}"; do
    have=$(records)
    if [ "$have" -lt "$size" ]; then
        n=$((size - have))
        t0=$(hx_now_ms)
        hx_ctl_t 3600 load --count "$n" --start $((LOAD_START + loaded)) >>"$HX_LOGS/load.log" 2>&1 ||
            hx_fail "hexadctl load of $n records failed; see $HX_LOGS/load.log"
        hx_log "loaded $n records in $(( $(hx_now_ms) - t0 )) ms"
        loaded=$((loaded + n))
    fi
    have=$(records)
    times=() wtimes=() pairs=()
    for _ in $(seq 1 "$runs"); do
        timed_start
        times+=("$START_MS")
        wtimes+=("$WRITE_MS")
        pairs+=("$START_MS/$WRITE_MS")
        compute_kill
    done
    printf '%-12s %-14s %-14s %s\n' "$have" "$(median "${times[@]}")" "$(median "${wtimes[@]}")" "${pairs[*]}"
done
hx_log "recovery lines of the last start: $(grep 'recovery: done' "$HX_LOGS/w1.log" | tail -1)"
