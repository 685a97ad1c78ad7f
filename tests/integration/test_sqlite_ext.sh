#!/usr/bin/env bash
# The stock sqlite3 shell loads the hexad VFS (issue 4, item 3):
#
#   (a) data written through psql to hexad-compute;
#   (b) sqlite3 + `.load libhexad_vfs` + `.open file:hexad?vfs=hexad` (read mode, the
#       default) reads exactly that data; a write is refused (read-only);
#       the running writer is not fenced: psql still commits, and its log
#       shows no new epoch;
#   (c) HEXAD_VFS_MODE=writer with hexad-compute stopped: the shell commits
#       a row; hexad-compute started again (recovery) serves it to psql;
#   (d) a bad HEXAD_CLUSTER makes .load fail with a message naming the fix.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hx_require_bins HEXAD_STORAGE_BIN HEXAD_COMPUTE_BIN HEXAD_VFS_EXT
for t in sqlite3 psql pg_isready; do
    command -v "$t" >/dev/null || hx_fail "$t is not installed; run 'bash deploy/install-deps.sh' (sqlite3, postgresql-client)"
done
[ -f "$HEXAD_VFS_EXT" ] || hx_fail "HEXAD_VFS_EXT=$HEXAD_VFS_EXT does not exist; build first"

SQL_TIMEOUT_S=120
SHELL_TIMEOUT_S=120

hx_cluster_start --pg-pages 16384
hx_pg_env

# A sanitizer build of the extension needs its runtime loaded first.
EXT_PRELOAD=$(ldd "$HEXAD_VFS_EXT" | awk '/lib(a|ub)san\.so/ { printf "%s%s", sep, $3; sep = ":" }')
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}

expect_psql() {  # what SQL WANT
    local got rc=0
    got=$(timeout -k 5 "$SQL_TIMEOUT_S" psql -X -q -A -t -v ON_ERROR_STOP=1 -c "$2" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] || hx_fail "$1: psql exited $rc: $got"
    [ "$got" = "$3" ] || hx_fail "$1: '$2' returned '$got', expected '$3'"
    hx_pass "$1: psql: $2 -> $got"
}

# shell [env...] -- SQL: runs the stock sqlite3 with the extension loaded
# and the volume opened, then the SQL lines; prints what the shell prints.
shell() {
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    printf '.bail on\n.load %s\n.open file:hexad?vfs=hexad\n%s\n' "${HEXAD_VFS_EXT%.so}" "$1" |
        env HEXAD_CLUSTER="$HX_CONF" LD_PRELOAD="$EXT_PRELOAD" "${envs[@]+"${envs[@]}"}" \
            timeout -k 5 "$SHELL_TIMEOUT_S" sqlite3 -batch 2>&1
}

# ---- (a) data through psql
hx_compute_start
out=$(timeout -k 5 "$SQL_TIMEOUT_S" psql -X -q -v ON_ERROR_STOP=1 -c \
    "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT NOT NULL);
     INSERT INTO t (id, s)
       WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500)
       SELECT x, 'row ' || x FROM c" 2>&1) || hx_fail "(a) psql could not write: $out"
expect_psql "(a)" "SELECT count(*) || ' ' || sum(id) FROM t" "500 125250"
epoch_before=$(grep -o 'epoch [0-9]*' "$HX_LOGS/w1.log" | tail -n 1)

# ---- (b) read mode
rc=0
got=$(shell -- "SELECT count(*) || ' ' || sum(id) FROM t; SELECT s FROM t WHERE id = 321;") || rc=$?
[ "$rc" -eq 0 ] || hx_fail "(b) sqlite3 with the extension exited $rc: $got"
[ "$got" = "$(printf '500 125250\nrow 321')" ] || hx_fail "(b) sqlite3 read '$got', expected '500 125250' and 'row 321'"
hx_pass "(b) sqlite3 .load libhexad_vfs (read mode) reads what psql wrote: $(tr '\n' ' ' <<<"$got")"
rc=0
got=$(shell -- "INSERT INTO t VALUES (1000, 'from the shell');") || rc=$?
[ "$rc" -ne 0 ] && grep -qi "readonly" <<<"$got" || hx_fail "(b) a write in read mode was not refused as read-only (exit $rc): $got"
hx_pass "(b) a write in read mode is refused: $(tr '\n' ' ' <<<"$got")"
expect_psql "(b) the writer still commits" "INSERT INTO t VALUES (501, 'after the shell'); SELECT count(*) FROM t" "501"
[ "$(grep -o 'epoch [0-9]*' "$HX_LOGS/w1.log" | tail -n 1)" = "$epoch_before" ] ||
    hx_fail "(b) the compute log shows a new epoch after the read-only shell"
grep -qi "fenced" "$HX_LOGS/w1.log" && hx_fail "(b) the writer reports being fenced after a read-only shell"
got=$(shell -- "SELECT count(*) FROM t;") || hx_fail "(b) second shell failed: $got"
[ "$got" = 501 ] || hx_fail "(b) a new shell sees '$got' rows, expected 501 (the commit made since)"
hx_pass "(b) the writer was not fenced; a new shell sees its new commit"

# ---- (c) writer mode, with the compute node stopped
hx_compute_stop TERM
rc=0
got=$(shell HEXAD_VFS_MODE=writer -- "INSERT INTO t VALUES (1000, 'from the shell'); SELECT count(*) FROM t;") || rc=$?
[ "$rc" -eq 0 ] && [ "$got" = 502 ] || hx_fail "(c) writer mode: exit $rc, output '$got' (expected 502)"
hx_pass "(c) HEXAD_VFS_MODE=writer: the shell committed a row"
hx_compute_start
expect_psql "(c) hexad-compute after the shell's commit" "SELECT s FROM t WHERE id = 1000" "from the shell"
expect_psql "(c) count" "SELECT count(*) FROM t" "502"

# ---- (d) a bad cluster file
rc=0
got=$(printf '.load %s\n' "${HEXAD_VFS_EXT%.so}" |
    env HEXAD_CLUSTER="$HX_TMP/no-such.conf" LD_PRELOAD="$EXT_PRELOAD" timeout -k 5 60 sqlite3 -batch -bail 2>&1) || rc=$?
[ "$rc" -ne 0 ] && grep -q "HEXAD_CLUSTER" <<<"$got" || hx_fail "(d) a missing cluster file: exit $rc, '$got'"
hx_pass "(d) a missing cluster file: $(head -n 1 <<<"$got")"
hx_compute_stop TERM
hx_pass "test_sqlite_ext: all checks passed"
