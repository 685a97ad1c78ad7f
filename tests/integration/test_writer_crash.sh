#!/usr/bin/env bash
# Writer crash recovery without redo (issue 6, item 4): numbered inserts
# through the PostgreSQL protocol (pg_numbered_inserts: 1-3 rows per
# transaction, every acknowledged COMMIT journaled), and the writer
# SIGKILLed at a random moment, again and again.
#
#   phase 1, HEXAD_CRASH_CYCLES cycles (default 20): start hexad-compute
#     (recovery), check, load until new commits are acknowledged, wait a
#     random 0-700 ms, SIGKILL it;
#   phase 2, HEXAD_CRASH_STORAGE_CYCLES cycles (default 6): the same, but
#     two random storage nodes are SIGKILLed together with the writer, so it
#     recovers with 4 of 6 copies of a PG; they come back later in the
#     cycle, while the loader runs (they must apply the truncations before
#     they serve anything).
#
# After every restart the checker asserts: every acknowledged transaction
# is present with all its rows, no transaction is partial, nothing was
# never attempted; and new commits are acknowledged in every cycle.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hx_require_bins HEXAD_STORAGE_BIN HEXAD_COMPUTE_BIN HEXAD_NUMBERED_INSERTS_BIN
command -v pg_isready >/dev/null || hx_fail "pg_isready is not installed; run 'bash deploy/install-deps.sh' (postgresql-client)"

CYCLES=${HEXAD_CRASH_CYCLES:-20}
STORAGE_CYCLES=${HEXAD_CRASH_STORAGE_CYCLES:-6}
[[ "$CYCLES" =~ ^[0-9]+$ && "$STORAGE_CYCLES" =~ ^[0-9]+$ ]] || hx_fail "HEXAD_CRASH_CYCLES and HEXAD_CRASH_STORAGE_CYCLES must be numbers"
READY_DEADLINE_S=60   # the writer accepts SQL after start (recovery)
ACK_DEADLINE_S=60     # a restarted writer acknowledges new commits
LOADER_EXIT_S=30      # the loader notices the killed writer
KILL_DELAY_MS_MAX=700
LOADER=$HEXAD_NUMBERED_INSERTS_BIN
JOURNAL=$HX_TMP/journal
mkdir -p "$JOURNAL"

# Small PGs so that the table spans several of them.
hx_cluster_start --pg-pages 64
sed -i "s/commit_timeout_ms=[0-9]*/commit_timeout_ms=10000/" "$HX_CONF"
HOST=127.0.0.1
PORT=$((HX_BASE_PORT + 200))
mapfile -t STORAGE_IDS < <(hx_storage_ids)
COMPUTE_PID=
LOADER_PID=

compute_start() {
    local pid
    echo "--- $(date +%T) start" >>"$HX_LOGS/w1.log"
    "$HEXAD_COMPUTE_BIN" --cluster "$HX_CONF" --id w1 </dev/null >>"$HX_LOGS/w1.log" 2>&1 &
    pid=$!
    disown "$pid"
    hx_track_pid "$pid"
    COMPUTE_PID=$pid
    wait_until "! hx_pid_alive $pid || pg_isready -q -h $HOST -p $PORT -t 2" "$READY_DEADLINE_S" 0.05 ||
        hx_fail "hexad-compute (pid $pid) did not accept connections within ${READY_DEADLINE_S} s"
    hx_pid_alive "$pid" || hx_fail "hexad-compute exited while starting; see $HX_LOGS/w1.log"
}

compute_kill() {
    kill -KILL "$COMPUTE_PID"
    wait_until "! hx_pid_alive $COMPUTE_PID" 10 || hx_fail "hexad-compute (pid $COMPUTE_PID) survived SIGKILL"
    COMPUTE_PID=
}

# After a failed check: every page the writer read since its last start,
# as each member of its PG serves it at the same LSN (hexadctl page), so
# the output names the copy that differs. The read lines are logged at
# HEXAD_LOG=debug; without them this says so.
diagnose() {
    local start reads page lsn node
    start=$(grep -n '^--- ' "$HX_LOGS/w1.log" | tail -1 | cut -d: -f1)
    reads=$(tail -n +"${start:-1}" "$HX_LOGS/w1.log" |
        sed -n 's/.* page \([0-9]*\) at \([0-9]*\) read from \([^ ]*\) .*/\1 \2 \3/p' | sort -u)
    if [ -z "$reads" ]; then
        echo "no page reads logged since the writer's start (rerun with HEXAD_LOG=debug)"
        return 0
    fi
    while read -r page lsn node; do
        echo "page $page at $lsn was read from $node; each member now:"
        hx_ctl_t 30 page --page "$page" --lsn "$lsn" 2>&1 || true
    done <<<"$reads"
}

# The loader journals its first attempt only after CREATE TABLE was
# acknowledged: before that there is nothing to check.
check() {  # what
    local out
    if [ ! -s "$JOURNAL/attempts" ]; then
        LAST_CHECK="nothing attempted yet"
        return 0
    fi
    if ! out=$("$LOADER" check "$HOST" "$PORT" "$JOURNAL" 2>&1); then
        echo "$1: $out" >&2
        echo "the same check again: $("$LOADER" check "$HOST" "$PORT" "$JOURNAL" 2>&1 | tail -1)" >&2
        diagnose >&2
        hx_fail "$1: $out"
    fi
    LAST_CHECK=$out
}

loader_start() {  # first txn number
    "$LOADER" load "$HOST" "$PORT" "$JOURNAL" "$1" >>"$HX_LOGS/loader.log" 2>&1 &
    LOADER_PID=$!
    hx_track_pid "$LOADER_PID"
}

# The loader ends when the writer dies: exit 5 (connection lost) is the
# expected end; anything else is a refused statement on a live connection.
loader_reap() {
    local rc=0
    wait_until "! hx_pid_alive $LOADER_PID" "$LOADER_EXIT_S" || hx_fail "the loader (pid $LOADER_PID) still runs ${LOADER_EXIT_S} s after the writer was killed"
    wait "$LOADER_PID" || rc=$?
    [ "$rc" -eq 5 ] || hx_fail "the loader exited $rc (expected 5, connection lost); see $HX_LOGS/loader.log"
    LOADER_PID=
}

declare -a DOWN=()
total=$((CYCLES + STORAGE_CYCLES))
t0=$(hx_now_ms)
for cycle in $(seq 1 "$total"); do
    with_storage=0
    [ "$cycle" -gt "$CYCLES" ] && with_storage=1
    compute_start
    check "cycle $cycle, after restart"
    before=$(hx_lines "$JOURNAL/acked")
    loader_start $((cycle * 1000000 + 1))
    # A restarted writer takes new writes.
    wait_until "[ \$(hx_lines $JOURNAL/acked) -gt $before ] || ! hx_pid_alive $LOADER_PID" "$ACK_DEADLINE_S" 0.05 ||
        hx_fail "cycle $cycle: no commit acknowledged within ${ACK_DEADLINE_S} s of the restart"
    [ "$(hx_lines "$JOURNAL/acked")" -gt "$before" ] || hx_fail "cycle $cycle: the loader stopped before any commit was acknowledged; see $HX_LOGS/loader.log"
    # Storage nodes killed with the previous writer come back now, under
    # load, after this writer's recovery ran without them.
    for id in "${DOWN[@]+"${DOWN[@]}"}"; do
        hx_start_node "$id"
    done
    DOWN=()
    delay_ms=$((RANDOM % (KILL_DELAY_MS_MAX + 1)))
    sleep "$(printf '0.%03d' "$delay_ms")"   # the random moment of the crash
    compute_kill
    if [ "$with_storage" -eq 1 ]; then
        a=$((RANDOM % ${#STORAGE_IDS[@]}))
        b=$(((a + 1 + RANDOM % (${#STORAGE_IDS[@]} - 1)) % ${#STORAGE_IDS[@]}))
        DOWN=("${STORAGE_IDS[$a]}" "${STORAGE_IDS[$b]}")
        hx_kill_node "${DOWN[0]}"
        hx_kill_node "${DOWN[1]}"
    fi
    loader_reap
    hx_log "cycle $cycle: killed after ${delay_ms} ms$([ "$with_storage" -eq 1 ] && echo " with ${DOWN[*]}"); $(($(hx_lines "$JOURNAL/acked") - before)) new commits acknowledged"
done

# Final restart: the writer recovers (still without the last two storage
# nodes), every acknowledged commit is there; then they return.
compute_start
check "final restart"
hx_log "$LAST_CHECK"
for id in "${DOWN[@]+"${DOWN[@]}"}"; do
    hx_start_node "$id"
done
"$LOADER" load "$HOST" "$PORT" "$JOURNAL" $(((total + 1) * 1000000 + 1)) 20 >>"$HX_LOGS/loader.log" 2>&1 || hx_fail "writes after the last restart failed; see $HX_LOGS/loader.log"
check "end"
hx_log "$LAST_CHECK"
hx_pass "$total writer crashes ($STORAGE_CYCLES with 2 storage nodes) in $(( ($(hx_now_ms) - t0) / 1000 )) s: every acknowledged commit present, none partial, writes go on"
