# shellcheck shell=bash
# PostgreSQL 15 instances for the benchmark, on loopback, in a temp dir.
# Sourced by bench/bench.sh.
#
#   pg_quorum_start DIR PORT    a primary on PORT and 5 streaming standbys
#                               (PORT+1..PORT+5, pg_basebackup -R) with
#                               synchronous_standby_names = 'ANY 3 (...)'
#                               and synchronous_commit = on: a commit is on
#                               4 of 6 copies, as in hexad
#   pg_single_start DIR PORT    one PostgreSQL, synchronous_commit = on
#   pg_stop_all                 stops every postmaster started here, by pid
#
# PostgreSQL refuses to run as root: as root, every server command runs as
# the unprivileged user $PG_USER (default postgres, made by the Debian
# package) and DIR is handed to it. Clients connect over TCP as the
# superuser "postgres" with trust authentication (loopback only).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=${PG_USER:-postgres}
PG_STANDBYS=5
PG_SYNC_QUORUM=3          # ANY 3 of 5 standbys + the primary = 4 of 6 copies
PG_START_DEADLINE_S=120
PG_STOP_DEADLINE_S=60
PG_PIDS=()                # postmaster pids, stopped by pg_stop_all

pg_as() {  # command... as the PostgreSQL user when root
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

pg_check_install() {
    [ -x "$PG_BIN/postgres" ] || bench_die "PostgreSQL 15 is not installed ($PG_BIN/postgres missing); run 'bash deploy/install-deps.sh' (package postgresql)"
    if [ "$(id -u)" -eq 0 ]; then
        id "$PG_USER" >/dev/null 2>&1 || bench_die "running as root, PostgreSQL needs an unprivileged user '$PG_USER' (none exists); create it (useradd -r $PG_USER) or set PG_USER"
    fi
}

# The settings both setups share; the rest is PostgreSQL's defaults
# (fsync on, full_page_writes on, shared_buffers 128MB).
pg_conf_common() {  # port socket_dir
    cat <<EOF
listen_addresses = '127.0.0.1'
port = $1
unix_socket_directories = '$2'
max_connections = 100
synchronous_commit = on
fsync = on
wal_level = replica
max_wal_senders = 10
hot_standby = on
logging_collector = off
EOF
}

pg_initdb() {  # datadir
    pg_as "$PG_BIN/initdb" -D "$1" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$1.initdb.log" 2>&1 ||
        bench_die "initdb of $1 failed; see $1.initdb.log"
}

# Starts the server in DATADIR, waits until it accepts connections, and
# records the postmaster's pid.
pg_start() {  # datadir port
    local d=$1 port=$2 pid
    pg_as "$PG_BIN/pg_ctl" -D "$d" -l "$d.log" -w -t "$PG_START_DEADLINE_S" start >/dev/null ||
        bench_die "PostgreSQL in $d did not start on port $port; see $d.log"
    pid=$(head -n 1 "$d/postmaster.pid")
    [[ "$pid" =~ ^[0-9]+$ ]] || bench_die "no postmaster pid in $d/postmaster.pid"
    PG_PIDS+=("$pid")
}

pg_psql() {  # port SQL
    psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"
}

pg_quorum_start() {  # dir port
    local dir=$1 port=$2 i names=() n deadline
    pg_as mkdir -p "$dir"
    pg_initdb "$dir/primary"
    pg_conf_common "$port" "$dir" | pg_as tee -a "$dir/primary/postgresql.conf" >/dev/null
    pg_start "$dir/primary" "$port"
    for i in $(seq 1 "$PG_STANDBYS"); do
        pg_as "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$dir/standby$i" \
            -R -X stream --checkpoint=fast >"$dir/standby$i.basebackup.log" 2>&1 ||
            bench_die "pg_basebackup of standby $i failed; see $dir/standby$i.basebackup.log"
        # The primary names its synchronous standbys by application_name,
        # which a walreceiver takes from cluster_name.
        printf "port = %d\ncluster_name = 'standby%d'\n" $((port + i)) "$i" |
            pg_as tee -a "$dir/standby$i/postgresql.conf" >/dev/null
        pg_start "$dir/standby$i" $((port + i))
        names+=("standby$i")
    done
    local list
    list=$(IFS=,; echo "${names[*]}")
    pg_psql "$port" "ALTER SYSTEM SET synchronous_standby_names = 'ANY $PG_SYNC_QUORUM ($list)'" >/dev/null
    pg_psql "$port" "SELECT pg_reload_conf()" >/dev/null
    deadline=$((SECONDS + PG_START_DEADLINE_S))
    while :; do
        n=$(pg_psql "$port" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'quorum'")
        [ "$n" = "$PG_STANDBYS" ] && break
        [ "$SECONDS" -lt "$deadline" ] ||
            bench_die "only $n of $PG_STANDBYS standbys stream as quorum standbys after ${PG_START_DEADLINE_S} s; see $dir/standby*.log"
        sleep 0.2
    done
    echo "  PostgreSQL quorum: primary :$port, standbys :$((port + 1))-:$((port + PG_STANDBYS)), $(pg_psql "$port" 'SHOW synchronous_standby_names')"
}

pg_single_start() {  # dir port
    local dir=$1 port=$2
    pg_as mkdir -p "$dir"
    pg_initdb "$dir/single"
    pg_conf_common "$port" "$dir" | pg_as tee -a "$dir/single/postgresql.conf" >/dev/null
    pg_start "$dir/single" "$port"
    echo "  PostgreSQL single: :$port"
}

# WAL position of the server on PORT, in bytes from the start of WAL.
pg_wal_bytes() {  # port
    pg_psql "$1" "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
}

pg_alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$st" ] && [ "$st" != Z ]
}

# Fast shutdown (SIGINT) of every postmaster, one deadline for all; SIGKILL
# for the ones still running then (their backends exit with them).
pg_stop_all() {
    local pid deadline left
    [ "${#PG_PIDS[@]}" -gt 0 ] || return 0
    for pid in "${PG_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + PG_STOP_DEADLINE_S))
    while :; do
        left=0
        for pid in "${PG_PIDS[@]}"; do pg_alive "$pid" && left=1; done
        [ "$left" -eq 0 ] || [ "$SECONDS" -ge "$deadline" ] && break
        sleep 0.2
    done
    for pid in "${PG_PIDS[@]}"; do
        if pg_alive "$pid"; then
            echo "  postmaster $pid still running after ${PG_STOP_DEADLINE_S} s; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    PG_PIDS=()
}
