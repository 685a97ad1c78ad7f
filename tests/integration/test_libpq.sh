#!/usr/bin/env bash
# libpq end to end (issue 4: "integration tests that drive the server with
# libpq"): 9 storage nodes, the writer hexad-compute on a free port, and
# tests/integration/test_libpq.c as the client.
#
#   (a) trust authentication: every check of test_libpq.c (connect,
#       several statements per query, command tags, BEGIN/COMMIT/ROLLBACK/
#       END with PQtransactionStatus, SQLSTATEs, PQcancel, malformed
#       protocol bytes on raw sockets while other sessions go on);
#   (b) the writer restarted with password= on its cluster-file line: no
#       password and a wrong one are refused, the right one works, and
#       every check passes again; the restarted writer also has
#       wire_compression=off, so its appends reach storage nodes that
#       took compressed ones before as plain frames;
#   (c) the writer is still alive and its log names the protocol errors.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hx_require_bins HEXAD_STORAGE_BIN HEXAD_COMPUTE_BIN HEXAD_TEST_LIBPQ_BIN
command -v pg_isready >/dev/null || hx_fail "pg_isready is not installed; run 'bash deploy/install-deps.sh' (postgresql-client)"

CLIENT_TIMEOUT_S=300  # the whole test_libpq run

hx_cluster_start --pg-pages 16384
hx_pg_env

run_client() {  # what [password]
    local what=$1 rc=0 log=$HX_LOGS/test_libpq-$1.log
    shift
    timeout -k 5 "$CLIENT_TIMEOUT_S" "$HEXAD_TEST_LIBPQ_BIN" "$PG_HOST" "$PG_PORT" "$@" >"$log" 2>&1 || rc=$?
    sed "s/^/  [$what] /" "$log"
    [ "$rc" -eq 0 ] || hx_fail "($what) test_libpq exited $rc: $(grep -m1 '^FAIL' "$log" || tail -n 3 "$log")"
    hx_pass "($what) test_libpq: $(grep -c '^ok:' "$log") checks passed"
}

# ---- (a) trust
hx_compute_start
run_client trust

# ---- (b) password authentication
hx_compute_stop TERM
PASSWORD="s3cret-$RANDOM"
sed -i "s/^\(compute .*id=w1 .*\)$/\1 password=$PASSWORD/" "$HX_CONF"
grep -q "password=$PASSWORD" "$HX_CONF" || hx_fail "(b) could not add password= to the compute line of $HX_CONF"
sed -i "s/^\(cluster .*\)$/\1 wire_compression=off/" "$HX_CONF"
grep -q "wire_compression=off" "$HX_CONF" || hx_fail "(b) could not add wire_compression=off to the cluster line of $HX_CONF"
hx_compute_start
run_client password "$PASSWORD"

# ---- (c) the server survived everything, and says what it refused
kill -0 "$HX_COMPUTE_PID" || hx_fail "(c) hexad-compute died during the tests; see $HX_LOGS/w1.log"
grep -q "cancel request for pid=[0-9]*: interrupting" "$HX_LOGS/w1.log" ||
    hx_fail "(c) the compute log does not show the cancel request interrupting a session"
hx_pass "(c) hexad-compute still runs; cancel requests logged"
hx_compute_stop TERM
hx_pass "test_libpq: all checks passed"
