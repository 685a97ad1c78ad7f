#!/usr/bin/env bash
# SQL end to end (DESIGN.md "Compute nodes"): 9 storage nodes, the writer
# hexad-compute on a free port, psql and pgbench as unchanged clients.
#
#   (a) create a table, insert rows in a transaction, exact count and sum;
#   (a2) the writer's GET /metrics (README.md "Metrics"): Prometheus text;
#       one INSERT moves the commit counter by exactly one, and the writer
#       lock, statement and durability-wait counters; VDL covers the
#       last commit once its reply came;
#   (b) an error inside a transaction block, then ROLLBACK: data unchanged;
#   (c) SIGTERM the compute node (exit 0), restart it (recovery, no redo
#       replay): the data is still there;
#   (d) SIGKILL two storage nodes of PG 0: more inserts still commit (4/6);
#   (e) pgbench -n -M simple -c 4 -j 2 -t 50 over tables made by SQL:
#       200 transactions processed, 0 failed, balances consistent; the
#       writer's /metrics counted their commit replies;
#   (f) a second hexad-compute on the same port exits 1 naming the port
#       before it opens the volume (the running writer is not fenced), and
#       so does one whose metrics port is taken; a reader role exits 1
#       "not supported yet";
#   (g) a third member of PG 0 lost (3/6): a commit is not acknowledged;
#       after commit_timeout_ms the client gets ERROR 40003 "commit outcome
#       unknown" naming the write quorum, with a hint, and the log says so.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hx_require_bins HEXAD_STORAGE_BIN HEXADCTL_BIN HEXAD_COMPUTE_BIN
for t in psql pg_isready pgbench jq curl; do
    command -v "$t" >/dev/null || hx_fail "$t is not installed; run 'bash deploy/install-deps.sh' (postgresql-client, jq, curl)"
done

SQL_TIMEOUT_S=120       # any one psql invocation
BENCH_TIMEOUT_S=300

COMMIT_TIMEOUT_MS=5000  # cluster file: how long a reply may wait for 4/6

hx_cluster_start --pg-pages 16384
sed -i "s/commit_timeout_ms=[0-9]*/commit_timeout_ms=$COMMIT_TIMEOUT_MS/" "$HX_CONF"
grep -q "commit_timeout_ms=$COMMIT_TIMEOUT_MS" "$HX_CONF" || hx_fail "could not set commit_timeout_ms in $HX_CONF"
hx_pg_env
W1_METRICS=127.0.0.1:$((HX_BASE_PORT + 100))  # gen-cluster.sh: base port + 100
grep -q "^compute id=w1 .*metrics=$W1_METRICS" "$HX_CONF" ||
    hx_fail "cluster file gives w1 no metrics=$W1_METRICS: $(grep compute "$HX_CONF")"

# w1_metric NAME [LABELS]: the value of NAME{LABELS} (default node="w1")
# in a scrape of the writer's /metrics; fails when it is absent.
w1_metric() {
    curl -sS --max-time 5 "http://$W1_METRICS/metrics" |
        awk -v want="$1{${2:-node=\"w1\"}}" '$1 == want { print $2; f = 1 } END { exit !f }'
}

# sql SQL...: runs through psql, stops at the first error; prints rows
# unaligned, tuples only, '|' separated.
sql() {
    timeout -k 5 "$SQL_TIMEOUT_S" psql -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"
}

# expect WHAT SQL WANT
expect() {
    local got rc=0
    got=$(sql "$2" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] || hx_fail "$1: psql exited $rc: $got"
    [ "$got" = "$3" ] || hx_fail "$1: '$2' returned '$got', expected '$3'"
    hx_pass "$1: $2 -> $got"
}

# ---- (a) basic SQL over the volume
hx_compute_start
hx_log "hexad-compute up on $PG_HOST:$PG_PORT ($(grep -o 'serving PostgreSQL.*' "$HX_LOGS/w1.log" | tail -n 1))"
out=$(timeout -k 5 "$SQL_TIMEOUT_S" psql -X -q -A -t -v ON_ERROR_STOP=1 2>&1 <<'EOF'
CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, s TEXT);
BEGIN;
INSERT INTO t (id, v, s) VALUES (1, 10, 'one'), (2, 20, 'two'), (3, 30, 'three');
INSERT INTO t (id, v, s)
  WITH RECURSIVE c(x) AS (SELECT 4 UNION ALL SELECT x + 1 FROM c WHERE x < 100)
  SELECT x, x * 10, 'row ' || x FROM c;
COMMIT;
EOF
) || hx_fail "(a) create + insert failed: $out"
expect "(a) count" "SELECT count(*) FROM t" "100"
expect "(a) sum" "SELECT sum(v) FROM t" "50500"
expect "(a) row" "SELECT s FROM t WHERE id = 42" "row 42"

# ---- (a2) the writer's /metrics
hdr=$HX_TMP/w1-headers
body=$(curl -sS --max-time 5 -D "$hdr" "http://$W1_METRICS/metrics") ||
    hx_fail "(a2) GET /metrics on w1 ($W1_METRICS) failed"
grep -qi '^HTTP/1.1 200' "$hdr" || hx_fail "(a2) GET /metrics: not 200: $(head -1 "$hdr")"
grep -qi '^Content-Type: text/plain; version=0.0.4' "$hdr" ||
    hx_fail "(a2) GET /metrics: wrong content type: $(grep -i content-type "$hdr")"
for name in commits_total writer_lock_acquisitions_total writer_lock_held_seconds_total \
            writer_lock_handoff_seconds_total writer_lock_wait_seconds_total statements_total; do
    grep -q "^# TYPE hexad_compute_$name counter$" <<<"$body" ||
        hx_fail "(a2) w1's /metrics lacks the TYPE line of hexad_compute_$name"
done
sql "CREATE TABLE m (x INTEGER)" >/dev/null || hx_fail "(a2) CREATE TABLE m failed"
declare -A m0 m1
for name in commits_total writer_lock_acquisitions_total statements_total; do
    m0[$name]=$(w1_metric "hexad_compute_$name") || hx_fail "(a2) no hexad_compute_$name on w1"
done
m0[waits]=$(w1_metric hexad_compute_reply_waits_total 'node="w1",kind="commit"') ||
    hx_fail "(a2) no hexad_compute_reply_waits_total{kind=commit} on w1"
# AppendAcks from all storage nodes, and the seconds they took.
w1_acks() {
    curl -sS --max-time 5 "http://$W1_METRICS/metrics" | awk '
        /^hexad_compute_append_acks_total\{/ { n += $2 }
        /^hexad_compute_append_ack_seconds_total\{/ { t += $2 }
        END { printf "%d %.9f\n", n, t }'
}
read -r acks0 _ < <(w1_acks)
sql "INSERT INTO m VALUES (1)" >/dev/null || hx_fail "(a2) INSERT INTO m failed"
read -r acks1 ack_s < <(w1_acks)
# The reply waited for a write quorum: four members acked that append.
[ "$acks1" -ge $((acks0 + 4)) ] ||
    hx_fail "(a2) an INSERT's reply came with AppendAcks $acks0 -> $acks1, not 4 more"
awk -v t="$ack_s" 'BEGIN { exit !(t > 0) }' || hx_fail "(a2) the acks took $ack_s s in all"
for name in commits_total writer_lock_acquisitions_total statements_total; do
    m1[$name]=$(w1_metric "hexad_compute_$name") || hx_fail "(a2) no hexad_compute_$name on w1"
done
m1[waits]=$(w1_metric hexad_compute_reply_waits_total 'node="w1",kind="commit"') ||
    hx_fail "(a2) no hexad_compute_reply_waits_total{kind=commit} on w1"
[ "${m1[commits_total]}" -eq $((m0[commits_total] + 1)) ] ||
    hx_fail "(a2) one INSERT moved hexad_compute_commits_total from ${m0[commits_total]} to ${m1[commits_total]}, not by 1"
for name in writer_lock_acquisitions_total statements_total waits; do
    [ "${m1[$name]}" -gt "${m0[$name]}" ] || hx_fail "(a2) $name did not move after an INSERT (${m0[$name]} -> ${m1[$name]})"
done
held=$(w1_metric hexad_compute_writer_lock_held_seconds_total) || hx_fail "(a2) no writer lock hold time"
awk -v h="$held" 'BEGIN { exit !(h > 0) }' || hx_fail "(a2) the writer lock was held for $held s in all"
vdl=$(w1_metric hexad_compute_vdl) || hx_fail "(a2) no hexad_compute_vdl on w1"
last=$(w1_metric hexad_compute_last_commit_lsn) || hx_fail "(a2) no hexad_compute_last_commit_lsn on w1"
[ "$vdl" -ge "$last" ] || hx_fail "(a2) VDL $vdl below the last commit's LSN $last after its reply"
[ "$(w1_metric hexad_compute_storage_connected 'node="w1",storage="s1"')" = 1 ] ||
    hx_fail "(a2) w1's /metrics does not show s1 connected"
hx_pass "(a2) w1 /metrics: an INSERT moved commits ${m0[commits_total]} -> ${m1[commits_total]}, statements ${m0[statements_total]} -> ${m1[statements_total]}, storage acks $acks0 -> $acks1; writer lock held $held s in all; VDL $vdl >= last commit $last"

# ---- (b) an error inside a transaction block, then ROLLBACK
out=$(timeout -k 5 "$SQL_TIMEOUT_S" psql -X -A -t 2>&1 <<'EOF'
BEGIN;
INSERT INTO t (id, v, s) VALUES (1000, 1, 'in tx');
UPDATE t SET v = v + 1000;
INSERT INTO t (id, v, s) VALUES (1, 0, 'duplicate key');
SELECT 'after error';
ROLLBACK;
EOF
) || true
grep -q "ERROR" <<<"$out" || hx_fail "(b) the duplicate key did not report an error: $out"
grep -qi "current transaction is aborted" <<<"$out" ||
    hx_fail "(b) a statement after the error ran instead of failing with 'current transaction is aborted': $out"
hx_pass "(b) error inside BEGIN aborts the block ($(grep -m1 ERROR <<<"$out"))"
expect "(b) count after rollback" "SELECT count(*) FROM t" "100"
expect "(b) sum after rollback" "SELECT sum(v) FROM t" "50500"

# ---- (c) clean restart of the compute node = recovery
hx_compute_stop TERM
grep -q "stopped (exit 0)" "$HX_LOGS/w1.log" || hx_fail "(c) no 'stopped (exit 0)' in the compute log after SIGTERM"
hx_pass "(c) SIGTERM: hexad-compute closed its connections and exited 0"
hx_compute_start
expect "(c) count after restart" "SELECT count(*) FROM t" "100"
expect "(c) sum after restart" "SELECT sum(v) FROM t" "50500"

# ---- (d) two storage nodes of PG 0 lost: commits go on (4 of 6)
mapfile -t victims < <(hx_ctl status --json | jq -r '.pgs[] | select(.pg == 0) | .members[].node' | head -n 2)
[ "${#victims[@]}" -eq 2 ] || hx_fail "(d) could not find two members of PG 0 in hexadctl status --json"
for n in "${victims[@]}"; do hx_kill_node "$n"; done
hx_log "(d) SIGKILLed ${victims[*]} (members of PG 0)"
t0=$(hx_now_ms)
out=$(timeout -k 5 "$SQL_TIMEOUT_S" psql -X -q -A -t -v ON_ERROR_STOP=1 2>&1 <<'EOF'
BEGIN;
INSERT INTO t (id, v, s)
  WITH RECURSIVE c(x) AS (SELECT 101 UNION ALL SELECT x + 1 FROM c WHERE x < 150)
  SELECT x, x * 10, 'after kill ' || x FROM c;
COMMIT;
INSERT INTO t (id, v, s) VALUES (151, 1510, 'autocommit after kill');
EOF
) || hx_fail "(d) inserts with ${victims[*]} down failed: $out"
hx_pass "(d) 51 rows committed with ${victims[*]} down in $(($(hx_now_ms) - t0)) ms"
expect "(d) count" "SELECT count(*) FROM t" "151"
expect "(d) sum" "SELECT sum(v) FROM t" "$((151 * 152 * 10 / 2))"

# ---- (e) pgbench, tables made by SQL (scale 1)
out=$(timeout -k 5 "$SQL_TIMEOUT_S" psql -X -q -A -t -v ON_ERROR_STOP=1 2>&1 <<'EOF'
CREATE TABLE pgbench_branches (bid int primary key, bbalance int, filler text);
CREATE TABLE pgbench_tellers (tid int primary key, bid int, tbalance int, filler text);
CREATE TABLE pgbench_accounts (aid int primary key, bid int, abalance int, filler text);
CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime text, filler text);
BEGIN;
INSERT INTO pgbench_branches (bid, bbalance) VALUES (1, 0);
INSERT INTO pgbench_tellers (tid, bid, tbalance)
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10)
  SELECT x, 1, 0 FROM c;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
  SELECT x, 1, 0, '' FROM c;
COMMIT;
EOF
) || hx_fail "(e) creating the pgbench tables failed: $out"
expect "(e) accounts" "SELECT count(*) FROM pgbench_accounts" "100000"

bench_out=$HX_LOGS/pgbench.log
rc=0
timeout -k 5 "$BENCH_TIMEOUT_S" pgbench -n -M simple -c 4 -j 2 -t 50 >"$bench_out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || hx_fail "(e) pgbench exited $rc: $(tail -n 5 "$bench_out" | tr '\n' ' ')"
grep -q "number of transactions actually processed: 200/200" "$bench_out" ||
    hx_fail "(e) pgbench did not process 200/200 transactions: $(grep -E 'processed|failed' "$bench_out" | tr '\n' ' ')"
if grep -q "number of failed transactions" "$bench_out"; then
    grep -q "number of failed transactions: 0 " "$bench_out" ||
        hx_fail "(e) pgbench reports failed transactions: $(grep 'failed' "$bench_out")"
fi
hx_pass "(e) pgbench: 200/200 transactions, 0 failed; $(grep -m1 '^tps' "$bench_out")"
waits=$(w1_metric hexad_compute_reply_waits_total 'node="w1",kind="commit"') ||
    hx_fail "(e) no hexad_compute_reply_waits_total{kind=commit} on w1"
# Counted since the restart in (c): the tables' commits and pgbench's 200.
[ "$waits" -ge 200 ] || hx_fail "(e) w1 counted $waits commit replies held for durability, fewer than pgbench's 200"
acq=$(w1_metric hexad_compute_writer_lock_acquisitions_total) || hx_fail "(e) no writer lock acquisitions"
held=$(w1_metric hexad_compute_writer_lock_held_seconds_total) || hx_fail "(e) no writer lock hold time"
hx_pass "(e) w1 /metrics: $waits commit replies held for durability; writer lock taken $acq times, mean hold $(awk -v h="$held" -v n="$acq" 'BEGIN { printf "%.0f us", h / n * 1e6 }')"
expect "(e) history rows" "SELECT count(*) FROM pgbench_history" "200"
# Every transaction adds the same delta to one account, teller and branch.
expect "(e) balances agree" \
    "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(delta) FROM pgbench_history) AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT sum(delta) FROM pgbench_history) AND (SELECT bbalance FROM pgbench_branches) = (SELECT sum(delta) FROM pgbench_history)" \
    "1"
expect "(e) table t untouched" "SELECT count(*) FROM t" "151"

# ---- (f) refusals that must not disturb the running writer
epoch_before=$(grep -o 'epoch [0-9]*)' "$HX_LOGS/w1.log" | tail -n 1)
rc=0
out=$(timeout -k 5 60 "$HEXAD_COMPUTE_BIN" --cluster "$HX_CONF" --id w1 </dev/null 2>&1) || rc=$?
[ "$rc" -eq 1 ] || hx_fail "(f) a second hexad-compute on a busy port exited $rc, expected 1: $out"
grep -q "already in use" <<<"$out" || hx_fail "(f) the port-in-use error does not say so: $out"
grep -q "recovery" <<<"$out" && hx_fail "(f) the second hexad-compute ran recovery before failing to listen: $out"
hx_pass "(f) port in use: exit 1, '$(grep -m1 -o 'cannot listen.*in use' <<<"$out")'"
# The same writer on a free PostgreSQL port: its metrics port is w1's.
other_port=$((HX_BASE_PORT + 201))
hx_port_listening "$other_port" && hx_fail "(f) port $other_port is taken; rerun"
sed "s/^\(compute id=w1 .*addr=\)[^ ]*/\1127.0.0.1:$other_port/" "$HX_CONF" >"$HX_TMP/metrics-taken.conf"
grep -q "addr=127.0.0.1:$other_port metrics=$W1_METRICS" "$HX_TMP/metrics-taken.conf" ||
    hx_fail "(f) could not move w1's PostgreSQL port in a copy of the cluster file"
rc=0
out=$(timeout -k 5 60 "$HEXAD_COMPUTE_BIN" --cluster "$HX_TMP/metrics-taken.conf" --id w1 </dev/null 2>&1) || rc=$?
[ "$rc" -eq 1 ] || hx_fail "(f) a hexad-compute whose metrics port is taken exited $rc, expected 1: $out"
grep -q "cannot listen for metrics on $W1_METRICS (another process holds the port? change metrics= in the cluster file)" <<<"$out" ||
    hx_fail "(f) the metrics-port error does not name the port and the fix: $out"
grep -q "recovery" <<<"$out" && hx_fail "(f) the hexad-compute with a taken metrics port ran recovery: $out"
hx_pass "(f) metrics port in use: exit 1, '$(grep -m1 -o 'cannot listen for metrics.*' <<<"$out")'"
expect "(f) first writer still serves" "SELECT count(*) FROM t" "151"
sed 's/role=writer/role=reader/' "$HX_CONF" >"$HX_TMP/reader.conf"
rc=0
out=$(timeout -k 5 60 "$HEXAD_COMPUTE_BIN" --cluster "$HX_TMP/reader.conf" --id w1 </dev/null 2>&1) || rc=$?
if [ "$rc" -ne 1 ] || ! grep -q "not supported yet" <<<"$out"; then
    hx_fail "(f) role=reader: exit $rc, expected 1 and 'not supported yet': $out"
fi
hx_pass "(f) role=reader refused: exit 1"
[ "$(grep -o 'epoch [0-9]*)' "$HX_LOGS/w1.log" | tail -n 1)" = "$epoch_before" ] ||
    hx_fail "(f) the compute log shows a new epoch after the refusals"

# ---- (g) write quorum lost: no acknowledgement, a clear error after the timeout
third=$(hx_ctl status --json | jq -r --arg a "${victims[0]}" --arg b "${victims[1]}" \
    '[.pgs[] | select(.pg == 0) | .members[].node | select(. != $a and . != $b)][0]')
if [ -z "$third" ] || [ "$third" = null ]; then hx_fail "(g) no third member of PG 0 found"; fi
hx_kill_node "$third"
t0=$(hx_now_ms)
rc=0
out=$(timeout -k 5 "$SQL_TIMEOUT_S" psql -X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
    -c "INSERT INTO t (id, v, s) VALUES (999, 0, 'no quorum')" 2>&1) || rc=$?
dt=$(($(hx_now_ms) - t0))
[ "$rc" -ne 0 ] || hx_fail "(g) a commit with 3 of 6 members of PG 0 was acknowledged: $out"
[ "$dt" -ge $((COMMIT_TIMEOUT_MS - 500)) ] ||
    hx_fail "(g) the commit failed after $dt ms, before commit_timeout_ms=$COMMIT_TIMEOUT_MS: $out"
# The client learns: outcome unknown (40003), the cause, and the fix.
grep -q "ERROR:  40003: commit outcome unknown: the storage write quorum (4 of 6 copies) did not confirm it" <<<"$out" ||
    hx_fail "(g) psql did not report SQLSTATE 40003 'commit outcome unknown' naming the write quorum: $out"
grep -q "may still become durable" <<<"$out" || hx_fail "(g) the error does not say the commit may still become durable: $out"
grep -q "HINT: .*./hexad status" <<<"$out" || hx_fail "(g) the error has no hint pointing to ./hexad status: $out"
wait_until "grep -q 'not covered by VDL [0-9]* after commit_timeout_ms=$COMMIT_TIMEOUT_MS: write quorum lost? (outcome unknown)' '$HX_LOGS/w1.log'" 5 ||
    hx_fail "(g) the compute log does not say the commit's outcome is unknown"
hx_pass "(g) ${victims[*]} $third down: commit not acknowledged; after $dt ms: $(tr '\n' ' ' <<<"$out")"

# ---- SIGTERM with an idle client connected: it is disconnected, exit 0
mkfifo "$HX_TMP/idle.fifo"
exec 7<>"$HX_TMP/idle.fifo"
psql -X -q <"$HX_TMP/idle.fifo" >"$HX_LOGS/idle-psql.log" 2>&1 &
idle_pid=$!
hx_track_pid "$idle_pid"
echo "SELECT 1;" >&7
wait_until "[ \$(grep -c 'connected\$' '$HX_LOGS/w1.log') -gt \$(grep -c 'disconnected (' '$HX_LOGS/w1.log') ]" 10 ||
    hx_fail "the idle psql did not connect"
hx_compute_stop TERM
grep -q "closing 1 client connection" "$HX_LOGS/w1.log" || hx_fail "SIGTERM: the log does not show the idle client being closed"
hx_pass "SIGTERM with an idle client: connection closed, exit 0"
exec 7>&-
hx_pass "test_sql: all checks passed"
