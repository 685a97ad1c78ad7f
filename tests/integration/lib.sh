# shellcheck shell=bash
# Helpers for multi-process integration tests on loopback. Source it:
#
#   . "$(dirname "$0")/lib.sh"
#   hx_cluster_start --pg-pages 32      # 9 storage nodes, free ports
#   hx_kill_node s1; hx_start_node s1; hx_ctl status --json
#
# Rules it keeps: traffic only on 127.0.0.1; its own temp dir; free ports
# (a claimed slot below the ephemeral range, checked with ss); every process it starts
# is recorded and stopped BY PID on exit (never by name); every wait has a
# deadline.
#
# Environment (meson passes them): HEXAD_STORAGE_BIN, HEXADCTL_BIN.
# HX_KEEP=1 keeps the temp dir even when the test passes.
set -euo pipefail

HX_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HX_REPO=${HEXAD_REPO:-$(cd "$HX_LIB_DIR/../.." && pwd)}
HX_TEST_NAME=$(basename "${0%.sh}")
HX_TMP=$(mktemp -d "${TMPDIR:-/tmp}/hexad-$HX_TEST_NAME.XXXXXX")
HX_CONF=$HX_TMP/cluster.conf
HX_LOGS=$HX_TMP/logs
mkdir -p "$HX_LOGS"

declare -A HX_NODE_PID=()   # node id -> pid of the running daemon
HX_PIDS=()                  # every pid this test started (daemons, loads)
HX_FAILED=0

hx_log() { printf '%s [%s] %s\n' "$(date +%T)" "$HX_TEST_NAME" "$*"; }

hx_pass() { printf 'PASS: %s\n' "$*"; }

# Prints FAIL with the reason and exits 1 (the EXIT trap cleans up).
hx_fail() {
    HX_FAILED=1
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

hx_require_bins() {
    local v
    for v in "$@"; do
        [ -n "${!v:-}" ] || hx_fail "$v is not set; run this test through 'meson test' (./hexad test) or export $v=/path/to/binary"
        [ -x "${!v}" ] || hx_fail "$v=${!v} is not an executable; build first (ninja -C build-test)"
    done
}

# Stops every process this test started, by pid, SIGKILL (a test needs no
# clean shutdown, and SIGKILL cannot hang). On failure keeps the temp dir
# and prints the tail of every log.
hx_cleanup() {
    local rc=$? pid f
    set +e
    for pid in "${HX_PIDS[@]+"${HX_PIDS[@]}"}"; do
        hx_pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${HX_PIDS[@]+"${HX_PIDS[@]}"}"; do
        wait_until "! hx_pid_alive $pid" 5 || echo "$HX_TEST_NAME: pid $pid survived SIGKILL for 5 s" >&2
    done
    if [ "$rc" -ne 0 ] || [ "$HX_FAILED" -ne 0 ]; then
        for f in "$HX_LOGS"/*.log; do
            [ -f "$f" ] || continue
            echo "---- last lines of $f" >&2
            tail -n 20 "$f" >&2
        done
        echo "$HX_TEST_NAME: exit $rc; temp dir kept for inspection: $HX_TMP" >&2
    elif [ "${HX_KEEP:-0}" = 1 ]; then
        echo "$HX_TEST_NAME: temp dir kept: $HX_TMP"
    else
        rm -rf -- "$HX_TMP"
    fi
    if [ -n "$HX_PORT_SLOT" ] && [ "$(cat "$HX_PORT_SLOT/pid" 2>/dev/null)" = $$ ]; then
        rm -rf -- "$HX_PORT_SLOT"
    fi
    exit "$rc"
}
trap hx_cleanup EXIT
trap 'hx_fail "interrupted"' INT TERM

# True while PID runs; a zombie (killed, not yet reaped by its parent)
# counts as gone.
hx_pid_alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$st" ] && [ "$st" != Z ]
}

# Records a pid so that cleanup stops it.
hx_track_pid() { HX_PIDS+=("$1"); }

# wait_until "command" TIMEOUT_S [POLL_S]: evaluates command every POLL_S
# (default 0.1) until it succeeds; returns 1 when TIMEOUT_S passes first.
wait_until() {
    local cmd=$1 timeout_s=$2 poll_s=${3:-0.1} start
    start=$(date +%s%N)
    while :; do
        if eval "$cmd" >/dev/null 2>&1; then
            return 0
        fi
        if [ $(( ($(date +%s%N) - start) / 1000000 )) -ge $((timeout_s * 1000)) ]; then
            return 1
        fi
        sleep "$poll_s"
    done
}

# Milliseconds on a monotonic-enough clock (for durations in messages).
hx_now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

hx_port_listening() {  # port
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

hx_pid_listening() {  # pid port: that process has a socket listening on port
    ss -Hltnp "sport = :$2" 2>/dev/null | grep -q "pid=$1,"
}

# Picks a base port P such that nothing listens on P+1..P+n,
# P+100..P+100+n (the writer's and the storage nodes' metrics) and P+200
# (SQL), and sets HX_BASE_PORT.
# P is the start of a slot of HX_PORT_SLOT_SIZE ports between 20000 and the
# kernel's ephemeral range (ip_local_port_range), so that no outgoing
# connection's local port lands on a node's port; the slot is claimed with
# mkdir (atomic) in HX_PORT_SLOT_DIR so that tests running at the same time
# never share one. A slot whose owner died is taken over; hx_cleanup frees it.
HX_PORT_SLOT_SIZE=300
HX_PORT_SLOT_DIR=${TMPDIR:-/tmp}/hexad-test-port-slots
HX_PORT_SLOT=""

hx_claim_slot() {  # slot dir -> true when this test now owns it
    local owner
    if mkdir "$1" 2>/dev/null; then
        echo $$ >"$1/pid"
        return 0
    fi
    owner=$(cat "$1/pid" 2>/dev/null || true)
    # An owner that is gone (or a claim half made): free it for a later try.
    if [ -z "$owner" ] || ! kill -0 "$owner" 2>/dev/null; then
        rm -rf -- "$1"
    fi
    return 1
}

hx_pick_ports() {  # n
    local n=$1 eph=32768 slots k p i used busy
    read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    slots=$(( (eph - 20000) / HX_PORT_SLOT_SIZE - 1 ))
    [ "$slots" -ge 1 ] || slots=60  # no room below it: 20000-38000 then
    mkdir -p "$HX_PORT_SLOT_DIR"
    for _ in $(seq 1 100); do
        k=$((RANDOM % slots))
        p=$((20000 + k * HX_PORT_SLOT_SIZE))
        hx_claim_slot "$HX_PORT_SLOT_DIR/$k" || continue
        used=$(ss -Hltn 2>/dev/null | awk '{ sub(/.*:/, "", $4); print $4 }')
        busy=0
        for i in $(seq 1 "$n") $(seq 100 $((100 + n))) 200; do
            if grep -qx "$((p + i))" <<<"$used"; then busy=1; break; fi
        done
        if [ "$busy" -eq 0 ]; then
            HX_BASE_PORT=$p
            HX_PORT_SLOT=$HX_PORT_SLOT_DIR/$k
            return 0
        fi
        rm -rf -- "$HX_PORT_SLOT_DIR/$k"
    done
    hx_fail "no free port slot found below $eph after 100 tries (other tests hold them, or ss -ltn shows them busy)"
}

# The storage address (host:port) of node ID, from the cluster file.
hx_node_addr() {
    awk -v id="$1" '$1 == "storage" {
            a = ""; match_id = 0
            for (i = 2; i <= NF; i++) {
                if ($i == "id=" id) match_id = 1
                if ($i ~ /^addr=/) a = substr($i, 6)
            }
            if (match_id) { print a; exit }
        }' "$HX_CONF"
}

# Every storage node id in the cluster file (default: this test's), one a line.
hx_storage_ids_of() {
    awk '$1 == "storage" { for (i = 2; i <= NF; i++) if ($i ~ /^id=/) print substr($i, 4) }' "$1"
}
hx_storage_ids() { hx_storage_ids_of "$HX_CONF"; }

# Starts storage node ID in the background and waits (deadline 30 s) until
# it listens. Fails the test, with the node's log, if it exits or does not
# listen in time.
hx_start_node() {
    local id=$1 addr port pid
    addr=$(hx_node_addr "$id")
    [ -n "$addr" ] || hx_fail "no storage node '$id' in $HX_CONF"
    port=${addr##*:}
    if [ -n "${HX_NODE_PID[$id]:-}" ] && kill -0 "${HX_NODE_PID[$id]}" 2>/dev/null; then
        hx_fail "hx_start_node $id: already running as pid ${HX_NODE_PID[$id]}"
    fi
    echo "--- $(date +%T) start" >>"$HX_LOGS/$id.log"
    "$HEXAD_STORAGE_BIN" --cluster "$HX_CONF" --id "$id" </dev/null >>"$HX_LOGS/$id.log" 2>&1 &
    pid=$!
    # Out of the job table: bash then reaps it silently (no "Killed" job
    # notices); it stays our child, tracked and stopped by pid.
    disown "$pid"
    hx_track_pid "$pid"
    HX_NODE_PID[$id]=$pid
    # The socket must be this pid's: a port test alone once passed on a
    # socket that was gone a moment later (CI, gossip_catchup), and then
    # the node was "running but not listening".
    if ! wait_until "hx_pid_listening $pid $port || ! hx_pid_alive $pid" 30; then
        hx_fail "storage node $id (pid $pid) did not listen on $addr within 30 s"
    fi
    hx_pid_alive "$pid" || hx_fail "storage node $id exited while starting; see $HX_LOGS/$id.log"
}

# Stops node ID with a signal (KILL by default) by its pid and reaps it.
hx_signal_node() {  # id signal
    local id=$1 sig=$2 pid
    pid=${HX_NODE_PID[$id]:-}
    [ -n "$pid" ] || hx_fail "hx_signal_node $id: this test did not start it"
    kill -s "$sig" "$pid" 2>/dev/null || true
    if ! wait_until "! hx_pid_alive $pid" 20; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_until "! hx_pid_alive $pid" 5 || hx_fail "node $id (pid $pid) survived SIGKILL"
    fi
    unset 'HX_NODE_PID[$id]'
}

hx_kill_node() { hx_signal_node "$1" KILL; }
hx_stop_node() { hx_signal_node "$1" TERM; }
kill_node() { hx_kill_node "$@"; }
start_node() { hx_start_node "$@"; }

# Writes a cluster file with free ports under HX_TMP (arguments go to
# gen-cluster.sh, e.g. --pg-pages 32) and starts every storage node. The
# journals are 4 MiB, not 64: each node writes its journal in full once,
# and small ones make checkpoints and ring wraps happen in every test.
hx_cluster_start() {
    hx_require_bins HEXAD_STORAGE_BIN
    hx_pick_ports 64
    bash "$HX_REPO/deploy/local/gen-cluster.sh" --data "$HX_TMP/data" \
        --base-port "$HX_BASE_PORT" --pg-port $((HX_BASE_PORT + 200)) \
        --journal-mib 4 --out "$HX_CONF" "$@" >/dev/null
    local id ids=()
    mapfile -t ids < <(hx_storage_ids)
    for id in "${ids[@]}"; do
        hx_start_node "$id"
    done
    hx_log "cluster up: ${#ids[@]} storage nodes, ports $((HX_BASE_PORT + 1))-$((HX_BASE_PORT + ${#ids[@]})), dir $HX_TMP"
}

# ---- the writer w1 of hx_cluster_start's cluster file (psql, libpq)

HX_COMPUTE_READY_S=${HX_COMPUTE_READY_S:-60}  # start -> accepts SQL (recovery)
HX_COMPUTE_STOP_S=${HX_COMPUTE_STOP_S:-40}    # SIGTERM -> exit (a held reply may wait out a commit)
HX_COMPUTE_PID=

# Exports the libpq environment (PGHOST, PGPORT...) for w1 and sets
# PG_HOST and PG_PORT. Call after hx_cluster_start.
hx_pg_env() {
    PG_HOST=127.0.0.1
    PG_PORT=$((HX_BASE_PORT + 200))
    grep -q "addr=$PG_HOST:$PG_PORT" "$HX_CONF" ||
        hx_fail "cluster file has no compute node on $PG_HOST:$PG_PORT: $(grep compute "$HX_CONF")"
    export PGHOST=$PG_HOST PGPORT=$PG_PORT PGUSER=hexad PGDATABASE=hexad PGCONNECT_TIMEOUT=10
    unset PGPASSWORD PGSERVICE PGSSLMODE
}

# Starts hexad-compute w1 (log: $HX_LOGS/w1.log) and waits until it
# accepts connections (pg_isready needs no password: a FATAL reply still
# means "accepting"). Sets HX_COMPUTE_PID.
hx_compute_start() {
    local pid
    echo "--- $(date +%T) start" >>"$HX_LOGS/w1.log"
    "$HEXAD_COMPUTE_BIN" --cluster "$HX_CONF" --id w1 </dev/null >>"$HX_LOGS/w1.log" 2>&1 &
    pid=$!
    hx_track_pid "$pid"
    HX_COMPUTE_PID=$pid
    wait_until "! kill -0 $pid || pg_isready -q -t 2" "$HX_COMPUTE_READY_S" 0.2 ||
        hx_fail "hexad-compute (pid $pid) did not accept connections on $PG_HOST:$PG_PORT within ${HX_COMPUTE_READY_S} s"
    kill -0 "$pid" 2>/dev/null || hx_fail "hexad-compute exited while starting; see $HX_LOGS/w1.log"
}

# hx_compute_stop SIGNAL: by pid; after TERM the exit status must be 0.
hx_compute_stop() {
    local sig=$1 pid=$HX_COMPUTE_PID rc=0
    [ -n "$pid" ] || hx_fail "hx_compute_stop: hexad-compute is not running"
    kill -s "$sig" "$pid"
    wait_until "! kill -0 $pid" "$HX_COMPUTE_STOP_S" || hx_fail "hexad-compute (pid $pid) still runs ${HX_COMPUTE_STOP_S} s after SIG$sig"
    wait "$pid" || rc=$?
    HX_COMPUTE_PID=
    if [ "$sig" = TERM ] && [ "$rc" -ne 0 ]; then
        hx_fail "hexad-compute exited $rc after SIGTERM (expected 0); see $HX_LOGS/w1.log"
    fi
}

# hexadctl against this test's cluster, bounded: hx_ctl TIMEOUT_S args...
hx_ctl_t() {
    local t=$1
    shift
    timeout -k 5 "$t" "$HEXADCTL_BIN" --cluster "$HX_CONF" "$@"
}
hx_ctl() { hx_ctl_t 60 "$@"; }

hx_lines() {  # file -> number of lines (0 if absent)
    if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi
}
