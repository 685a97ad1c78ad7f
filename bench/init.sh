#!/usr/bin/env bash
# Creates and fills the pgbench tables through a hexad writer, over psql.
#
# The schema and row counts are those of `pgbench -i -s N` (1 branch, 10
# tellers and 100000 accounts per unit of scale, an empty history), in
# SQLite's dialect: the keys are INTEGER PRIMARY KEY (SQLite's rowid, the
# counterpart of pgbench's primary key indexes), and an account's filler is
# 84 blanks, as PostgreSQL stores pgbench's empty char(84). hexad-compute
# speaks the simple query protocol only (no COPY), so the accounts are
# generated on the server by WITH RECURSIVE, one transaction per batch.
# `./hexad bench-init` runs this; the tables are then ready for
# `pgbench -n -M simple` (tpcb-like).
set -euo pipefail

ACCOUNTS_PER_SCALE=100000
TELLERS_PER_SCALE=10

usage() {
    cat <<EOF
Usage: bench/init.sh --host H --port P --scale N [--user U] [--db D] [--batch ROWS]

Drops and re-creates pgbench_branches, pgbench_tellers, pgbench_accounts and
pgbench_history on the hexad writer at H:P and fills them like
'pgbench -i -s N', printing progress. Usually run as: ./hexad bench-init.

  --host H       writer host (PostgreSQL endpoint)
  --port P       writer port
  --scale N      pgbench scale factor, 1..10000
  --user U       user name (default hexad)
  --db D         database name (default hexad)
  --batch ROWS   accounts per transaction (default $ACCOUNTS_PER_SCALE)
  --help         show this help
EOF
}

die() { echo "bench-init: $1" >&2; exit "${2:-1}"; }

host="" port="" scale="" user=hexad db=hexad batch=$ACCOUNTS_PER_SCALE
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --host|--port|--scale|--user|--db|--batch)
            [ $# -ge 2 ] || die "$1 needs a value; see --help" 2
            case "$1" in
                --host) host=$2 ;; --port) port=$2 ;; --scale) scale=$2 ;;
                --user) user=$2 ;; --db) db=$2 ;; --batch) batch=$2 ;;
            esac
            shift 2 ;;
        *) die "unknown argument '$1'; see --help" 2 ;;
    esac
done
[ -n "$host" ] && [ -n "$port" ] || die "--host and --port are required; see --help" 2
[[ "$scale" =~ ^[0-9]+$ ]] && [ "$scale" -ge 1 ] && [ "$scale" -le 10000 ] ||
    die "--scale needs a number 1..10000 (got '$scale')" 2
[[ "$batch" =~ ^[0-9]+$ ]] && [ "$batch" -ge 1 ] || die "--batch needs a positive number (got '$batch')" 2
command -v psql >/dev/null || die "psql is not installed; run 'bash deploy/install-deps.sh' (postgresql-client)"

export PGHOST=$host PGPORT=$port PGUSER=$user PGDATABASE=$db PGCONNECT_TIMEOUT=10
sql() {  # SQL on stdin, stops at the first error
    psql -X -q -A -t -v ON_ERROR_STOP=1 >/dev/null
}

accounts=$((scale * ACCOUNTS_PER_SCALE))
tellers=$((scale * TELLERS_PER_SCALE))
filler=$(printf '%84s' '')
t0=$SECONDS

echo "bench-init: creating the pgbench tables on $host:$port (scale $scale: $scale branches, $tellers tellers, $accounts accounts)"
sql <<EOF || die "creating the tables failed (is the writer running? './hexad status')"
DROP TABLE IF EXISTS pgbench_history;
DROP TABLE IF EXISTS pgbench_tellers;
DROP TABLE IF EXISTS pgbench_accounts;
DROP TABLE IF EXISTS pgbench_branches;
CREATE TABLE pgbench_branches (bid INTEGER PRIMARY KEY, bbalance INTEGER, filler CHAR(88));
CREATE TABLE pgbench_tellers (tid INTEGER PRIMARY KEY, bid INTEGER, tbalance INTEGER, filler CHAR(84));
CREATE TABLE pgbench_accounts (aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER, filler CHAR(84));
CREATE TABLE pgbench_history (tid INTEGER, bid INTEGER, aid INTEGER, delta INTEGER, mtime TIMESTAMP, filler CHAR(22));
BEGIN;
INSERT INTO pgbench_branches (bid, bbalance)
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $scale)
  SELECT x, 0 FROM c;
INSERT INTO pgbench_tellers (tid, bid, tbalance)
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $tellers)
  SELECT x, (x - 1) / $TELLERS_PER_SCALE + 1, 0 FROM c;
COMMIT;
EOF

done_rows=0
while [ "$done_rows" -lt "$accounts" ]; do
    first=$((done_rows + 1))
    last=$((done_rows + batch))
    [ "$last" -le "$accounts" ] || last=$accounts
    sql <<EOF || die "inserting accounts $first..$last failed; see the error above"
BEGIN;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
  WITH RECURSIVE c(x) AS (SELECT $first UNION ALL SELECT x + 1 FROM c WHERE x < $last)
  SELECT x, (x - 1) / $ACCOUNTS_PER_SCALE + 1, 0, '$filler' FROM c;
COMMIT;
EOF
    done_rows=$last
    echo "bench-init: $done_rows of $accounts accounts ($((100 * done_rows / accounts))%), $((SECONDS - t0)) s"
done

got=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -c \
    "SELECT (SELECT count(*) FROM pgbench_branches) || ' ' || (SELECT count(*) FROM pgbench_tellers) || ' ' || (SELECT count(*) FROM pgbench_accounts)") ||
    die "counting the rows failed"
[ "$got" = "$scale $tellers $accounts" ] ||
    die "row counts are '$got' (branches tellers accounts), expected '$scale $tellers $accounts'"
echo "bench-init: done in $((SECONDS - t0)) s; run e.g.: pgbench -n -M simple -h $host -p $port -U $user -c 8 -j 2 -T 30 $db"
