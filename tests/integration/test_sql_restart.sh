#!/usr/bin/env bash
# A SQL workload through the real ./hexad script (issue 4, item 6):
#
#   (a) ./hexad up --data DIR on a cluster file with this test's free
#       ports: 9 storage nodes and the writer; it prints the psql line;
#   (b) pgbench (4 clients, a custom script: one account += 1 and one
#       log row per transaction) runs while two storage nodes of PG 0 are
#       SIGKILLed (./hexad kill) in its middle: 0 failed transactions and
#       the exact final state (every account's balance equals its log rows,
#       total = transactions run);
#   (c) ./hexad down && ./hexad up: the same exact state, and the writer
#       takes new commits.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hx_require_bins HEXAD_STORAGE_BIN HEXAD_COMPUTE_BIN HEXADCTL_BIN
for t in psql pgbench jq; do
    command -v "$t" >/dev/null || hx_fail "$t is not installed; run 'bash deploy/install-deps.sh' (postgresql-client, postgresql, jq)"
done

CLIENTS=4
TX_PER_CLIENT=1000         # 4000 transactions in all
ACCOUNTS=50                # few rows: clients collide on them
KILL_AFTER_TX=100          # kill once this many log rows are committed
SQL_TIMEOUT_S=120
BENCH_TIMEOUT_S=400
UP_TIMEOUT_S=300           # ./hexad up (packages present, build up to date)
PROGRESS_DEADLINE_S=120

# ./hexad uses the binaries meson built (no other build).
HEXAD_BUILD=$(dirname "$(dirname "$HEXAD_STORAGE_BIN")")
export HEXAD_BUILD
[ -x "$HEXAD_BUILD/compute-node/hexad-compute" ] || hx_fail "hexad-compute is not next to hexad-storage in $HEXAD_BUILD"
cd "$HX_REPO" || hx_fail "cannot cd to the repository $HX_REPO"

data=$HX_TMP/cluster
mkdir -p "$data"
hx_pick_ports 64
PG_PORT=$((HX_BASE_PORT + 200))
bash deploy/local/gen-cluster.sh --data "$data" --base-port "$HX_BASE_PORT" \
    --pg-port "$PG_PORT" --journal-mib 4 --out "$data/cluster.conf" >/dev/null
export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=hexad PGDATABASE=hexad PGCONNECT_TIMEOUT=10
unset PGPASSWORD PGSERVICE PGSSLMODE

# Every pid ./hexad recorded is stopped by the EXIT trap too.
track_cluster_pids() {
    local f
    for f in "$data"/run/*.pid; do
        [ -f "$f" ] && hx_track_pid "$(cat "$f")"
    done
}

hexad_up() {  # what
    local out rc=0
    out=$(timeout -k 5 "$UP_TIMEOUT_S" ./hexad up --data "$data" 2>&1) || rc=$?
    track_cluster_pids
    printf '%s\n' "$out" >>"$HX_LOGS/hexad-up.log"
    [ "$rc" -eq 0 ] || hx_fail "$1: ./hexad up exited $rc: $(tail -n 5 <<<"$out")"
    grep -q "psql -h 127.0.0.1 -p $PG_PORT -U hexad hexad" <<<"$out" ||
        hx_fail "$1: ./hexad up did not print the psql command line for port $PG_PORT: $(tail -n 5 <<<"$out")"
    hx_pass "$1: ./hexad up started the cluster and printed the psql line"
}

sql() { timeout -k 5 "$SQL_TIMEOUT_S" ./hexad sql --data "$data" "$1" 2>&1; }

expect() {  # what SQL WANT
    local got rc=0
    got=$(timeout -k 5 "$SQL_TIMEOUT_S" psql -X -q -A -t -v ON_ERROR_STOP=1 -c "$2" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] || hx_fail "$1: psql exited $rc: $got"
    [ "$got" = "$3" ] || hx_fail "$1: '$2' returned '$got', expected '$3'"
    hx_pass "$1: $2 -> $got"
}

# The exact state after N transactions: N log rows, every account's
# balance equal to its log rows, and the balances summing to N.
check_state() {  # what N
    expect "$1: log rows" "SELECT count(*) FROM log" "$2"
    expect "$1: total balance" "SELECT sum(bal) FROM acct" "$2"
    expect "$1: accounts match their logs" \
        "SELECT count(*) FROM acct a WHERE a.bal <> (SELECT count(*) FROM log l WHERE l.id = a.id)" "0"
    expect "$1: accounts" "SELECT count(*) FROM acct" "$ACCOUNTS"
}

# ---- (a) up
hexad_up "(a)"
out=$(timeout -k 5 "$SQL_TIMEOUT_S" ./hexad sql --data "$data" \
    "CREATE TABLE acct (id INTEGER PRIMARY KEY, bal INTEGER NOT NULL);
     CREATE TABLE log (n INTEGER PRIMARY KEY, id INTEGER NOT NULL);
     INSERT INTO acct (id, bal)
       WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $ACCOUNTS)
       SELECT x, 0 FROM c" 2>&1) || hx_fail "(a) ./hexad sql could not create the tables: $out"
check_state "(a) empty" 0

# ---- (b) pgbench with two storage nodes killed in its middle
cat >"$HX_TMP/tx.sql" <<EOF
\\set id random(1, $ACCOUNTS)
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = :id;
INSERT INTO log (id) VALUES (:id);
END;
EOF
total=$((CLIENTS * TX_PER_CLIENT))
bench_log=$HX_LOGS/pgbench.log
# Chosen before pgbench starts, so that the kill follows the progress
# check at once.
mapfile -t victims < <(timeout -k 5 60 ./hexad status --data "$data" --json |
    jq -r '.pgs[] | select(.pg == 0) | .members[].node' | head -n 2)
[ "${#victims[@]}" -eq 2 ] || hx_fail "(b) could not find two members of PG 0 in ./hexad status --json"
timeout -k 5 "$BENCH_TIMEOUT_S" pgbench -n -M simple -c "$CLIENTS" -j 2 -t "$TX_PER_CLIENT" \
    -f "$HX_TMP/tx.sql" >"$bench_log" 2>&1 &
bench_pid=$!
hx_track_pid "$bench_pid"

committed() { psql -X -q -A -t -c "SELECT count(*) FROM log" 2>/dev/null; }
wait_until "[ \"\$(committed)\" -ge $KILL_AFTER_TX ]" "$PROGRESS_DEADLINE_S" 0.2 ||
    hx_fail "(b) pgbench did not commit $KILL_AFTER_TX transactions within ${PROGRESS_DEADLINE_S} s ($(committed) so far)"
for n in "${victims[@]}"; do
    ./hexad kill --data "$data" "$n" >/dev/null || hx_fail "(b) ./hexad kill $n failed"
done
at_kill=$(committed)
hx_log "(b) SIGKILLed ${victims[*]} (members of PG 0) with $at_kill of $total transactions committed"
[ "$at_kill" -lt "$total" ] || hx_fail "(b) pgbench had finished before the kill; raise TX_PER_CLIENT"

rc=0
wait "$bench_pid" || rc=$?
[ "$rc" -eq 0 ] || hx_fail "(b) pgbench exited $rc: $(tail -n 5 "$bench_log" | tr '\n' ' ')"
grep -q "number of transactions actually processed: $total/$total" "$bench_log" ||
    hx_fail "(b) pgbench did not process $total/$total: $(grep -E 'processed|failed|error' "$bench_log" | tr '\n' ' ')"
if grep -q "number of failed transactions" "$bench_log"; then
    grep -q "number of failed transactions: 0 " "$bench_log" ||
        hx_fail "(b) pgbench reports failed transactions: $(grep failed "$bench_log")"
fi
hx_pass "(b) pgbench: $total/$total transactions, 0 failed, ${victims[*]} killed after $at_kill"
check_state "(b) after the kill" "$total"

# ---- (c) down && up: the same state
timeout -k 5 120 ./hexad down --data "$data" >>"$HX_LOGS/hexad-down.log" 2>&1 ||
    hx_fail "(c) ./hexad down failed: $(tail -n 5 "$HX_LOGS/hexad-down.log")"
for f in "$data"/run/*.pid; do
    [ -f "$f" ] && hx_fail "(c) ./hexad down left $f"
done
hx_pass "(c) ./hexad down stopped every node"
hexad_up "(c)"
check_state "(c) after down && up" "$total"
out=$(sql "BEGIN; UPDATE acct SET bal = bal + 1 WHERE id = 1; INSERT INTO log (id) VALUES (1); COMMIT") ||
    hx_fail "(c) a commit after up failed: $out"
check_state "(c) one more commit" "$((total + 1))"
timeout -k 5 120 ./hexad down --data "$data" >>"$HX_LOGS/hexad-down.log" 2>&1 || hx_fail "(c) the final ./hexad down failed"
hx_pass "test_sql_restart: all checks passed"
