#!/usr/bin/env bash
# Issue 5: no reply before a commit is on 4 of 6 copies (DESIGN.md, "The
# write path" and "Compute nodes": a commit is acknowledged when VDL >= its
# LSN; held replies wait while the write quorum is lost).
#
# Exactly 6 storage nodes (2 per AZ), so every PG has the same six members,
# and hexad-compute. Several psql writers commit numbered rows in the
# background; each records an id as "started" before its INSERT and as
# "acked" only after psql returned success.
#
#   (a) SIGSTOP 3 of the 6 nodes: only 3 copies can answer, so no commit
#       started after the freeze may be acknowledged. For a few seconds the
#       acked count may move only by the commits that were already in
#       flight (one per writer, at most), and no writer may get an ack for
#       a row newer than its in-flight one;
#   (b) SIGCONT: the held commits complete and the writers go on;
#   (c) the writers stop; every started row was acknowledged (nothing
#       failed), and the table holds exactly the acknowledged rows.
#
# Frozen nodes are SIGCONTed on the normal path; on failure lib.sh's
# cleanup SIGKILLs every process it started, which ends a stopped one too.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hx_require_bins HEXAD_STORAGE_BIN HEXADCTL_BIN HEXAD_COMPUTE_BIN
for t in psql pg_isready jq; do
    command -v "$t" >/dev/null || hx_fail "$t is not installed; run 'bash deploy/install-deps.sh' (postgresql-client, jq)"
done

WRITERS=4               # background psql writers, one commit in flight each
FROZEN_WATCH_S=5        # how long the acked count is watched while frozen
PROGRESS_DEADLINE_S=60  # to see commits before the freeze / after SIGCONT
READY_DEADLINE_S=60
# A commit must outlive the freeze: its reply is held, never timed out.
COMMIT_TIMEOUT_MS=300000

hx_cluster_start --per-az 2
sed -i "s/commit_timeout_ms=[0-9]*/commit_timeout_ms=$COMMIT_TIMEOUT_MS/" "$HX_CONF"
grep -q "commit_timeout_ms=$COMMIT_TIMEOUT_MS" "$HX_CONF" || hx_fail "could not set commit_timeout_ms in $HX_CONF"
mapfile -t NODES < <(hx_storage_ids)
[ "${#NODES[@]}" -eq 6 ] || hx_fail "expected 6 storage nodes, the cluster file has ${#NODES[@]}: ${NODES[*]}"

PG_PORT=$((HX_BASE_PORT + 200))
export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=hexad PGDATABASE=hexad PGCONNECT_TIMEOUT=10
unset PGPASSWORD PGSERVICE PGSSLMODE

"$HEXAD_COMPUTE_BIN" --cluster "$HX_CONF" --id w1 </dev/null >>"$HX_LOGS/w1.log" 2>&1 &
COMPUTE_PID=$!
hx_track_pid "$COMPUTE_PID"
wait_until "! kill -0 $COMPUTE_PID || pg_isready -q -t 2" "$READY_DEADLINE_S" 0.2 ||
    hx_fail "hexad-compute did not accept connections on 127.0.0.1:$PG_PORT within ${READY_DEADLINE_S} s"
kill -0 "$COMPUTE_PID" 2>/dev/null || hx_fail "hexad-compute exited while starting; see $HX_LOGS/w1.log"

psql -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE t (id INTEGER PRIMARY KEY, w INTEGER NOT NULL)" >/dev/null ||
    hx_fail "CREATE TABLE failed"

# PG 0 has all six nodes as members (6 nodes, 6 segments per PG).
members=$(hx_ctl status --json | jq -r '[.pgs[] | select(.pg == 0) | .members[].node] | sort | join(" ")')
[ "$members" = "$(printf '%s\n' "${NODES[@]}" | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
    hx_fail "PG 0's members are '$members', expected all six nodes"

STOP_FILE=$HX_TMP/stop-writers
# writer W: rows W*1000000 + 1, + 2, ...; files started.W / acked.W /
# failed.W, one id a line, appended in that order around each commit.
writer() {
    local w=$1 i=1 id
    while [ ! -e "$STOP_FILE" ] && [ "$i" -le 999999 ]; do
        id=$((w * 1000000 + i))
        echo "$id" >>"$HX_TMP/started.$w"
        if timeout -k 5 $((COMMIT_TIMEOUT_MS / 1000 + 60)) \
            psql -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO t (id, w) VALUES ($id, $w)" \
            >>"$HX_LOGS/writer.$w.log" 2>&1; then
            echo "$id" >>"$HX_TMP/acked.$w"
        else
            echo "$id" >>"$HX_TMP/failed.$w"
        fi
        i=$((i + 1))
    done
}
WRITER_PIDS=()
for w in $(seq 1 "$WRITERS"); do
    : >"$HX_TMP/started.$w"; : >"$HX_TMP/acked.$w"; : >"$HX_TMP/failed.$w"
    writer "$w" &
    WRITER_PIDS+=("$!")
    hx_track_pid "$!"
done

acked_total() { cat "$HX_TMP"/acked.* | wc -l | tr -d ' '; }
failed_total() { cat "$HX_TMP"/failed.* | wc -l | tr -d ' '; }

wait_until "[ \$(acked_total) -ge 40 ]" "$PROGRESS_DEADLINE_S" ||
    hx_fail "the writers did not get 40 commits acknowledged within ${PROGRESS_DEADLINE_S} s ($(acked_total) acked, $(failed_total) failed; see $HX_LOGS/writer.*.log)"
hx_pass "writers running: $(acked_total) commits acknowledged before the freeze"

# ---- (a) freeze 3 of 6: no write quorum
FROZEN=("${NODES[0]}" "${NODES[2]}" "${NODES[4]}")   # one per AZ
for n in "${FROZEN[@]}"; do kill -STOP "${HX_NODE_PID[$n]}"; done
for n in "${FROZEN[@]}"; do
    wait_until "grep -q '^State:.*T' /proc/${HX_NODE_PID[$n]}/status" 5 ||
        hx_fail "(a) $n (pid ${HX_NODE_PID[$n]}) is not stopped after SIGSTOP"
done
# What each writer had started when the freeze took effect: its in-flight
# commit may still be acknowledged (its records may have reached 4 copies
# just before), nothing after it.
declare -A LAST_STARTED=()
for w in $(seq 1 "$WRITERS"); do LAST_STARTED[$w]=$(tail -n 1 "$HX_TMP/started.$w"); done
acked_at_freeze=$(acked_total)
hx_log "(a) SIGSTOPped ${FROZEN[*]}; $acked_at_freeze acked; watching for ${FROZEN_WATCH_S} s"

t_end=$(( $(hx_now_ms) + FROZEN_WATCH_S * 1000 ))
while [ "$(hx_now_ms)" -lt "$t_end" ]; do
    n=$(acked_total)
    [ "$n" -le $((acked_at_freeze + WRITERS)) ] ||
        hx_fail "(a) $((n - acked_at_freeze)) commits acknowledged with 3 of 6 nodes frozen (at most $WRITERS in-flight ones may finish)"
    sleep 0.2
done
for w in $(seq 1 "$WRITERS"); do
    newest=$(tail -n 1 "$HX_TMP/acked.$w")
    if [ -n "$newest" ] && [ "$newest" -gt "${LAST_STARTED[$w]}" ]; then
        hx_fail "(a) writer $w: row $newest, started after the freeze (in flight then: ${LAST_STARTED[$w]}), was acknowledged with 3 of 6 nodes frozen"
    fi
done
acked_frozen=$(acked_total)
[ "$(failed_total)" -eq 0 ] || hx_fail "(a) $(failed_total) commits failed while frozen (they should wait): $(cat "$HX_LOGS"/writer.*.log | tail -n 3)"
pending=0
for w in $(seq 1 "$WRITERS"); do
    grep -qx "${LAST_STARTED[$w]}" "$HX_TMP/acked.$w" || pending=$((pending + 1))
done
[ "$pending" -ge 1 ] || hx_fail "(a) no commit was held during the freeze: the writers did not run (see $HX_LOGS/writer.*.log)"
hx_pass "(a) ${FROZEN_WATCH_S} s with ${FROZEN[*]} frozen: $((acked_frozen - acked_at_freeze)) in-flight commits finished, nothing started after the freeze acknowledged; $pending commits held"

# ---- (b) SIGCONT: the held commits complete
t0=$(hx_now_ms)
for n in "${FROZEN[@]}"; do kill -CONT "${HX_NODE_PID[$n]}"; done
for w in $(seq 1 "$WRITERS"); do
    wait_until "grep -qx '${LAST_STARTED[$w]}' '$HX_TMP/acked.$w' '$HX_TMP/failed.$w'" "$PROGRESS_DEADLINE_S" ||
        hx_fail "(b) writer $w's held commit (row ${LAST_STARTED[$w]}) did not complete within ${PROGRESS_DEADLINE_S} s of SIGCONT"
done
held_ms=$(( $(hx_now_ms) - t0 ))
wait_until "[ \$(acked_total) -ge $((acked_frozen + 40)) ]" "$PROGRESS_DEADLINE_S" ||
    hx_fail "(b) fewer than 40 more commits acknowledged within ${PROGRESS_DEADLINE_S} s of SIGCONT"
hx_pass "(b) SIGCONT: the $pending held commits completed in $held_ms ms; commits go on ($(acked_total) acked)"

# ---- (c) stop the writers; the data is exact
touch "$STOP_FILE"
for pid in "${WRITER_PIDS[@]}"; do
    wait_until "! hx_pid_alive $pid" "$PROGRESS_DEADLINE_S" || hx_fail "(c) writer pid $pid did not stop"
done
[ "$(failed_total)" -eq 0 ] || hx_fail "(c) $(failed_total) commits failed: $(cat "$HX_TMP"/failed.* | head -n 5 | tr '\n' ' ')"
started=$(cat "$HX_TMP"/started.* | wc -l | tr -d ' ')
acked=$(acked_total)
[ "$started" -eq "$acked" ] || hx_fail "(c) $started commits started but $acked acknowledged"
expected=$(cat "$HX_TMP"/acked.* | sort -n | awk '{ n++; s += $1 } END { printf "%d %d\n", n, s }')
got=$(psql -X -q -A -t -F ' ' -v ON_ERROR_STOP=1 -c "SELECT count(*), sum(id) FROM t") || hx_fail "(c) SELECT failed"
[ "$got" = "$expected" ] || hx_fail "(c) table holds count/sum '$got', the acknowledged rows are '$expected'"
cat "$HX_TMP"/acked.* | sort -n >"$HX_TMP/acked.sorted"
psql -X -q -A -t -v ON_ERROR_STOP=1 -c "SELECT id FROM t ORDER BY id" >"$HX_TMP/table.sorted" || hx_fail "(c) SELECT ids failed"
cmp -s "$HX_TMP/acked.sorted" "$HX_TMP/table.sorted" ||
    hx_fail "(c) the table's ids differ from the acknowledged ones: $(diff "$HX_TMP/acked.sorted" "$HX_TMP/table.sorted" | head -n 5 | tr '\n' ' ')"
hx_pass "(c) $acked commits, all acknowledged; the table holds exactly them (count, sum $got)"
hx_pass "test_sigstop: all checks passed"
