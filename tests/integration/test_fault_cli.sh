#!/usr/bin/env bash
# ./hexad's fault-injection commands on a cluster that ./hexad itself runs
# (README.md "A fault experiment: lose an AZ, keep writing" and "A fault
# experiment: corrupt a node's stored records"):
#
#   (a) 'start s1 .. s9' in one call, then 'start w1';
#   (b) 'kill --az az3' SIGKILLs s7 s8 s9 at once (an AZ failure); a SQL
#       insert still commits and reads back (4 of 6 copies remain); an
#       unknown AZ is a usage error naming the AZs that exist;
#   (c) 'start --az az3': all three listen again;
#   (d) 'freeze s1': its state in /proc is T, 'status' lists it as frozen,
#       an insert still commits; 'thaw s1': running again;
#   (e) 'damage s2' refuses while s2 runs (naming 'stop'); after 'stop s2'
#       it corrupts 3 records; 'start s2': its scrub repairs them from
#       peers, and every row and every load write reads back;
#   (f) 'down' with a frozen node: every node exits on SIGTERM (a frozen
#       one is sent SIGCONT after it), no SIGKILL needed, no pid left.
#
# The cluster directory is the test's temp dir, so ./hexad's logs are
# lib.sh's HX_LOGS (printed on failure). Every pid ./hexad records is
# tracked and SIGKILLed by lib.sh's cleanup if the test stops early.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hx_require_bins HEXAD_STORAGE_BIN HEXAD_COMPUTE_BIN HEXADCTL_BIN
for t in psql pg_isready jq; do
    command -v "$t" >/dev/null || hx_fail "$t is not installed; run 'bash deploy/install-deps.sh' (postgresql-client, jq)"
done

CMD_TIMEOUT_S=60        # any one ./hexad command (start waits 30 s at most)
SQL_TIMEOUT_S=60
STATE_DEADLINE_S=10     # /proc state after freeze/thaw, pids gone after kill
REPAIR_DEADLINE_S=60    # the restarted s2's scrub repairs what was corrupted
LOAD_COUNT=400          # writes on volume 2, so that s2 holds > 2 x 97 records
CORRUPT=3

# ./hexad uses the binaries meson built (no other build).
HEXAD_BUILD=$(dirname "$(dirname "$HEXAD_STORAGE_BIN")")
export HEXAD_BUILD
[ -x "$HEXAD_BUILD/compute-node/hexad-compute" ] || hx_fail "hexad-compute is not next to hexad-storage in $HEXAD_BUILD"
cd "$HX_REPO" || hx_fail "cannot cd to the repository $HX_REPO"

data=$HX_TMP            # cluster.conf = HX_CONF, logs/ = HX_LOGS, run/
hx_pick_ports 64
PG_PORT=$((HX_BASE_PORT + 200))
bash deploy/local/gen-cluster.sh --data "$HX_TMP/data" --base-port "$HX_BASE_PORT" \
    --pg-port "$PG_PORT" --journal-mib 4 --out "$HX_CONF" >/dev/null
export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=hexad PGDATABASE=hexad PGCONNECT_TIMEOUT=10
unset PGPASSWORD PGSERVICE PGSSLMODE HEXAD_DATA

# ./hexad CMD --data DIR ARGS..., bounded; output in OUT, exit status in RC.
OUT="" RC=0
hexad() {
    RC=0
    OUT=$(timeout -k 5 "$CMD_TIMEOUT_S" ./hexad "$1" --data "$data" "${@:2}" 2>&1) || RC=$?
    printf '+ ./hexad %s\n%s\n' "$*" "$OUT" >>"$HX_LOGS/hexad-cli.log"
}
must() {  # what CMD ARGS...: ./hexad CMD must exit 0
    local what=$1
    shift
    hexad "$@"
    [ "$RC" -eq 0 ] || hx_fail "$what: ./hexad $* exited $RC: $OUT"
}

# ./hexad detaches its nodes (setsid); record each for the cleanup.
track_cluster_pids() {
    local f
    for f in "$data"/run/*.pid; do
        [ -f "$f" ] && hx_track_pid "$(cat "$f")"
    done
}
pid_of() { cat "$data/run/$1.pid" 2>/dev/null || true; }
state_of() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1; }
port_of() { hx_node_addr "$1" | sed 's/.*://'; }

sql() {  # SQL -> psql's unaligned output; fails the test on an error
    local out rc=0
    out=$(timeout -k 5 "$SQL_TIMEOUT_S" psql -X -q -A -t -v ON_ERROR_STOP=1 -c "$1" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] || hx_fail "psql exited $rc on '$1': $out"
    printf '%s\n' "$out"
}

# Inserts row N and checks that the table then holds exactly rows 1..N.
insert_and_check() {  # what N
    local what=$1 n=$2 got want
    sql "INSERT INTO t (id) VALUES ($n)" >/dev/null
    got=$(sql "SELECT count(*), sum(id), max(id) FROM t" | tr '|' ' ')
    want="$n $((n * (n + 1) / 2)) $n"
    [ "$got" = "$want" ] || hx_fail "$what: the table holds count/sum/max '$got', expected '$want'"
    hx_pass "$what: row $n committed; the table holds rows 1..$n"
}

counter() {  # node name -> that counter of the node ('./hexad status --json')
    timeout -k 5 "$CMD_TIMEOUT_S" ./hexad status --data "$data" --json 2>>"$HX_LOGS/status-json.log" |
        jq --arg n "$1" --arg c "$2" '[.nodes[] | select(.id == $n) | .[$c]] | first // 0'
}

mapfile -t STORAGE < <(hx_storage_ids)
[ "${#STORAGE[@]}" -eq 9 ] || hx_fail "expected 9 storage nodes, $HX_CONF has ${#STORAGE[@]}"
AZ3=(s7 s8 s9)
for id in "${AZ3[@]}"; do
    grep -q "^storage id=$id az=az3 " "$HX_CONF" || hx_fail "$id is not in az3 in $HX_CONF"
done

# ---- (a) the cluster through ./hexad
t0=$(hx_now_ms)
hexad start "${STORAGE[@]}"
track_cluster_pids
[ "$RC" -eq 0 ] || hx_fail "(a) ./hexad start ${STORAGE[*]} exited $RC: $OUT"
for id in "${STORAGE[@]}"; do
    hx_pid_listening "$(pid_of "$id")" "$(port_of "$id")" || hx_fail "(a) $id (pid $(pid_of "$id")) does not listen on port $(port_of "$id")"
done
hexad start w1
track_cluster_pids
[ "$RC" -eq 0 ] || hx_fail "(a) ./hexad start w1 exited $RC: $OUT"
wait_until "pg_isready -q -t 2" 60 0.2 || hx_fail "(a) the writer w1 does not accept connections on port $PG_PORT within 60 s"
sql "CREATE TABLE t (id INTEGER PRIMARY KEY)" >/dev/null
insert_and_check "(a) healthy cluster" 1
hx_pass "(a) ./hexad started 9 storage nodes in one call and the writer in $(( $(hx_now_ms) - t0 )) ms"

# Volume 2 gets enough records for (e): one in every 97 is damaged.
J=$HX_TMP/journal
must "(a) load" load --count "$LOAD_COUNT" --journal "$J"
[ "$(hx_lines "$J")" -eq "$LOAD_COUNT" ] || hx_fail "(a) load acknowledged $(hx_lines "$J") of $LOAD_COUNT writes"

# ---- (b) lose AZ az3
hexad kill --az az9
if [ "$RC" -ne 2 ] || ! grep -q "no AZ 'az9'" <<<"$OUT" || ! grep -q "az1 az2 az3" <<<"$OUT"; then
    hx_fail "(b) ./hexad kill --az az9 exited $RC (expected 2, naming the AZs az1 az2 az3): $OUT"
fi
hx_pass "(b) an unknown AZ: exit 2, $(head -n 1 <<<"$OUT")"
declare -A OLD_PID=()
for id in "${AZ3[@]}"; do OLD_PID[$id]=$(pid_of "$id"); done
others=()
for id in s1 s2 s3 s4 s5 s6 w1; do others+=("$(pid_of "$id")"); done
must "(b)" kill --az az3
for id in "${AZ3[@]}"; do
    wait_until "! hx_pid_alive ${OLD_PID[$id]}" "$STATE_DEADLINE_S" ||
        hx_fail "(b) $id (pid ${OLD_PID[$id]}) still runs after ./hexad kill --az az3"
    [ ! -f "$data/run/$id.pid" ] || hx_fail "(b) $id's pid file remains after kill --az az3"
    grep -q "$id stopped (SIGKILL" <<<"$OUT" || hx_fail "(b) kill --az az3 does not report $id SIGKILLed: $OUT"
done
for pid in "${others[@]}"; do
    hx_pid_alive "$pid" || hx_fail "(b) kill --az az3 also stopped pid $pid, which is not in az3"
done
insert_and_check "(b) az3 down (s7 s8 s9 SIGKILLed)" 2

# ---- (c) bring az3 back
must "(c)" start --az az3
track_cluster_pids
for id in "${AZ3[@]}"; do
    pid=$(pid_of "$id")
    if [ -z "$pid" ] || [ "$pid" = "${OLD_PID[$id]}" ]; then
        hx_fail "(c) $id has no new pid after start --az az3 (pid file: '$pid')"
    fi
    hx_pid_listening "$pid" "$(port_of "$id")" || hx_fail "(c) $id (pid $pid) does not listen on port $(port_of "$id")"
done
hx_pass "(c) ./hexad start --az az3: s7 s8 s9 listen again"

# ---- (d) freeze and thaw s1
p1=$(pid_of s1)
must "(d)" freeze s1
wait_until "[ \"\$(state_of $p1)\" = T ]" "$STATE_DEADLINE_S" ||
    hx_fail "(d) s1 (pid $p1) is in state '$(state_of "$p1")' after ./hexad freeze s1, not T"
t0=$(hx_now_ms)
hexad status
status_ms=$(( $(hx_now_ms) - t0 ))
grep -Eq "^  s1 +storage +[^ ]+ +frozen \(pid $p1; './hexad thaw s1'\)" <<<"$OUT" ||
    hx_fail "(d) ./hexad status (exit $RC) does not list s1 as frozen: $OUT"
hx_pass "(d) s1 frozen (state T); ./hexad status lists it as frozen (exit $RC, ${status_ms} ms)"
insert_and_check "(d) s1 frozen" 3
must "(d)" thaw s1
[ "$(state_of "$p1")" != T ] || hx_fail "(d) s1 (pid $p1) is still in state T after ./hexad thaw s1"
hx_pid_alive "$p1" || hx_fail "(d) s1 (pid $p1) exited after thaw"
hexad status
grep -Eq "^  s1 +storage +[^ ]+ +running \(pid $p1\)" <<<"$OUT" ||
    hx_fail "(d) ./hexad status does not list the thawed s1 as running: $OUT"
hx_pass "(d) ./hexad thaw s1: state $(state_of "$p1"), listed as running"

# ---- (e) damage s2's store
hexad damage s2 --corrupt-records "$CORRUPT"
if [ "$RC" -eq 0 ] || ! grep -q "stop" <<<"$OUT"; then
    hx_fail "(e) ./hexad damage s2 while s2 runs exited $RC (expected non-zero, naming 'stop'): $OUT"
fi
hx_pass "(e) damage refuses a running node: $(head -n 1 <<<"$OUT")"
hx_pid_alive "$(pid_of s2)" || hx_fail "(e) the refused damage stopped s2"
must "(e)" stop s2
must "(e)" damage s2 --corrupt-records "$CORRUPT"
grep -q "$CORRUPT records corrupted on s2" <<<"$OUT" ||
    hx_fail "(e) ./hexad damage s2 --corrupt-records $CORRUPT does not report $CORRUPT records corrupted: $OUT"
n_lines=$(grep -Ec '^  [0-9]+ [0-9]+ [0-9]+$' <<<"$OUT" || true)
[ "$n_lines" -eq "$CORRUPT" ] || hx_fail "(e) damage listed $n_lines damaged records, expected $CORRUPT: $OUT"
grep -q "./hexad start s2" <<<"$OUT" || hx_fail "(e) damage does not name the next step: $OUT"
hx_pass "(e) ./hexad damage s2 --corrupt-records $CORRUPT on the stopped s2: $CORRUPT records corrupted"
t0=$(hx_now_ms)
must "(e)" start s2
track_cluster_pids
wait_until "[ \$(counter s2 repairs) -ge $CORRUPT ]" "$REPAIR_DEADLINE_S" 0.5 ||
    hx_fail "(e) s2 repaired $(counter s2 repairs) of $CORRUPT corrupt records within ${REPAIR_DEADLINE_S} s of its restart"
hx_pass "(e) s2 restarted; its $CORRUPT corrupt records repaired from peers in $(( $(hx_now_ms) - t0 )) ms ($(counter s2 checksum_failures) checksum failures)"
insert_and_check "(e) after the repair" 4
must "(e) verify" verify --journal "$J"
grep -q "verified $LOAD_COUNT writes" <<<"$OUT" || hx_fail "(e) verify did not verify $LOAD_COUNT writes: $OUT"
hx_pass "(e) every one of the $LOAD_COUNT load writes reads back"

# ---- (f) down, with a frozen node
must "(f)" freeze s5
p5=$(pid_of s5)
[ "$(state_of "$p5")" = T ] || hx_fail "(f) s5 (pid $p5) is in state '$(state_of "$p5")' after freeze, not T"
pids=$(cat "$data"/run/*.pid)
t0=$(hx_now_ms)
must "(f)" down
down_ms=$(( $(hx_now_ms) - t0 ))
! grep -q "sending SIGKILL" <<<"$OUT" || hx_fail "(f) ./hexad down needed SIGKILL (a frozen node kept its SIGTERM pending?): $OUT"
left=()
for p in $pids; do hx_pid_alive "$p" && left+=("$p"); done
[ "${#left[@]}" -eq 0 ] || hx_fail "(f) after ./hexad down pid(s) ${left[*]} still run"
[ -z "$(ls "$data/run")" ] || hx_fail "(f) after ./hexad down run/ still holds: $(ls "$data/run")"
hx_pass "(f) ./hexad down with s5 frozen: every node exited on SIGTERM in ${down_ms} ms, no pid file left"
hx_pass "test_fault_cli: all checks passed"
