#!/usr/bin/env bash
# Fencing of a stale writer (issue 6, item 2): two hexad-compute processes,
# w1 and w2, writers of the same volume.
#
#   (a) w1 serves numbered inserts; every acknowledged commit is journaled;
#   (b) w2 starts: its recovery seals a newer volume epoch, and it serves SQL;
#   (c) the next commit on w1 fails with an error naming the fencing, w1
#       logs "fenced" and exits 3; nothing w1 acknowledged is lost, its
#       refused row is not visible;
#   (d) w2 takes more writes; the checker still finds every acknowledged
#       commit, no partial transaction, no phantom.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hx_require_bins HEXAD_STORAGE_BIN HEXAD_COMPUTE_BIN HEXAD_NUMBERED_INSERTS_BIN
for t in psql pg_isready; do
    command -v "$t" >/dev/null || hx_fail "$t is not installed; run 'bash deploy/install-deps.sh' (postgresql-client)"
done

READY_DEADLINE_S=60   # a writer accepts SQL after start (recovery)
EXIT_DEADLINE_S=30    # a fenced writer exits
SQL_TIMEOUT_S=60
LOADER=$HEXAD_NUMBERED_INSERTS_BIN
JOURNAL=$HX_TMP/journal
mkdir -p "$JOURNAL"

hx_cluster_start --pg-pages 16384
sed -i "s/commit_timeout_ms=[0-9]*/commit_timeout_ms=10000/" "$HX_CONF"
HOST=127.0.0.1
P1=$((HX_BASE_PORT + 200))
P2=$((HX_BASE_PORT + 201))
hx_port_listening "$P2" && hx_fail "port $P2 for w2 is taken; rerun"
echo "compute id=w2 role=writer az=az2 addr=$HOST:$P2" >>"$HX_CONF"
unset PGPASSWORD PGSERVICE PGSSLMODE
export PGUSER=hexad PGDATABASE=hexad PGCONNECT_TIMEOUT=10

declare -A CPID=()
compute_start() {  # id port
    local id=$1 port=$2 pid
    echo "--- $(date +%T) start" >>"$HX_LOGS/$id.log"
    "$HEXAD_COMPUTE_BIN" --cluster "$HX_CONF" --id "$id" </dev/null >>"$HX_LOGS/$id.log" 2>&1 &
    pid=$!
    hx_track_pid "$pid"
    CPID[$id]=$pid
    wait_until "! hx_pid_alive $pid || pg_isready -q -h $HOST -p $port -t 2" "$READY_DEADLINE_S" 0.1 ||
        hx_fail "$id (pid $pid) did not accept connections on $HOST:$port within ${READY_DEADLINE_S} s"
    hx_pid_alive "$pid" || hx_fail "$id exited while starting; see $HX_LOGS/$id.log"
}

sql_on() {  # port SQL
    timeout -k 5 "$SQL_TIMEOUT_S" psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$HOST" -p "$1" -c "$2"
}

check_on() {  # port what
    local out
    out=$("$LOADER" check "$HOST" "$1" "$JOURNAL" 2>&1) || hx_fail "$2: $out"
    hx_log "$2: $out"
}

# (a)
compute_start w1 "$P1"
"$LOADER" load "$HOST" "$P1" "$JOURNAL" 1 40 >/dev/null || hx_fail "load on w1 failed"
acked_w1=$(hx_lines "$JOURNAL/acked")
[ "$acked_w1" -eq 40 ] || hx_fail "w1 acknowledged $acked_w1 commits, expected 40"
check_on "$P1" "w1 before w2"

# (b)
compute_start w2 "$P2"
got=$(sql_on "$P2" "SELECT count(*) FROM nums") || hx_fail "w2 does not serve SQL: $got"
hx_log "w2 serves SQL (count $got); $(grep -o 'epoch [0-9]*' "$HX_LOGS/w2.log" | tail -1)"

# (c) The next commit on w1 is refused and names the fencing.
out=$(sql_on "$P1" "INSERT INTO nums VALUES (999999, 999999, 1, 'w1 after fencing')" 2>&1) && hx_fail "a commit on w1 succeeded after w2 started: $out"
grep -qi "fenced" <<<"$out" || hx_fail "w1's refused commit does not name the fencing: $out"
hx_log "w1 refused the commit: $(tr '\n' ' ' <<<"$out")"
pid=${CPID[w1]}
wait_until "! hx_pid_alive $pid" "$EXIT_DEADLINE_S" || hx_fail "fenced w1 (pid $pid) still runs after ${EXIT_DEADLINE_S} s"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 3 ] || hx_fail "fenced w1 exited $rc, expected 3; see $HX_LOGS/w1.log"
grep -q "fenced: another writer recovered volume" "$HX_LOGS/w1.log" || hx_fail "w1's log does not say it was fenced"
hx_pass "w1 fenced: commit refused naming the fencing, exit 3, log says why"

# Nothing w1 acknowledged is lost; its refused row is not there.
check_on "$P2" "w2 after fencing"
got=$(sql_on "$P2" "SELECT count(*) FROM nums WHERE n = 999999") || hx_fail "w2: $got"
[ "$got" = 0 ] || hx_fail "w1's refused row is visible on w2"

# (d) w2 goes on.
"$LOADER" load "$HOST" "$P2" "$JOURNAL" 1000001 30 >/dev/null || hx_fail "load on w2 failed"
check_on "$P2" "w2 after its own writes"
[ "$(hx_lines "$JOURNAL/acked")" -eq 70 ] || hx_fail "journal has $(hx_lines "$JOURNAL/acked") acknowledged commits, expected 70"
hx_pass "w2 serves SQL; all 70 acknowledged commits present, none partial"
