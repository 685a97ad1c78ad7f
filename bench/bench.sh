#!/usr/bin/env bash
# The benchmark of issue 5: hexad against PostgreSQL 15 with quorum
# replication, same client (pgbench), same machine, same run.
#
# Systems, each run alone on the machine, one after the other:
#   hexad      a fresh local cluster (9 storage nodes in 3 AZs, writer w1)
#              in a temp dir on free ports, from the release build;
#   pg-quorum  a primary + 5 streaming standbys, synchronous_standby_names
#              = 'ANY 3 (...)', synchronous_commit = on (4 of 6 copies);
#   pg-single  one PostgreSQL, synchronous_commit = on.
# Workloads: pgbench's tpcb-like (-n -M simple) and bench/insert-only.sql,
# at each client count. Per run: tps, latency p50/p99 from pgbench's
# per-transaction log, the CPU time the system's processes used per
# transaction (hexad: storage nodes and writer; PostgreSQL: every
# postmaster and its children; pgbench not included), and the bytes
# shipped per transaction: for hexad
# what hexad-compute sends to the storage nodes (its sockets' bytes_acked,
# from ss -tinp), for pg-quorum the WAL the primary generated times 5
# standbys (pg_current_wal_lsn before and after). The physical floor of a
# commit (fdatasync + loopback round trip) is measured first by
# hexad-floor on the data directories' filesystem.
#
# With --rounds N the whole sequence runs N times, each round on fresh
# servers, the systems' order alternating between rounds (a shared
# machine's slow minutes then fall on both sides); the report gives
# medians and the spread of the per-round ratios.
#
# Output: a table on stdout; OUT/results.csv, OUT/summary.json,
# OUT/tps.png (gnuplot), OUT/logs/ (pgbench output, server logs).
# `./hexad bench` runs this after building; `bench/bench.sh --help`.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
BUILD=${HEXAD_BUILD:-$REPO/build}

SYSTEMS_ALL="hexad,pg-quorum,pg-single"
clients_list="1,8,32" scale=10 duration=30 systems=$SYSTEMS_ALL out="" keep=0 quick=0 rounds=1
scale_set=0 duration_set=0

usage() {
    cat <<EOF
Usage: ./hexad bench [--quick] [--clients 1,8,32] [--scale 10] [--duration S]
                     [--systems LIST] [--rounds N] [--out DIR] [--keep]

Benchmarks hexad against PostgreSQL 15 with quorum replication on this
machine, in one run: pgbench tpcb-like (-n -M simple) and an insert-only
script at each client count, against
  hexad      a fresh local cluster (9 storage nodes, 3 AZs) in a temp dir on
             free ports, release build ($BUILD);
  pg-quorum  PostgreSQL primary + 5 streaming standbys, synchronous_standby_names
             = 'ANY 3 (...)', synchronous_commit = on: a commit on 4 of 6 copies;
  pg-single  one PostgreSQL (synchronous_commit = on).
Prints tps, latency p50/p99 and the ratio hexad / pg-quorum; CPU ms per
transaction of each system's processes (not pgbench); bytes shipped
per transaction (hexad-compute -> storage vs. WAL x 5 standbys); single-client
commit latency against the floor (fdatasync + loopback RTT, hexad-floor).

  --quick          a short run: scale 1, 5 s per run (unless given)
  --clients LIST   client counts, comma separated (default 1,8,32)
  --scale N        pgbench scale (default 10; 100000 accounts per unit)
  --duration S     seconds per pgbench run (default 30)
  --systems LIST   subset of $SYSTEMS_ALL (default all)
  --rounds N       run everything N times on fresh servers, alternating the
                   systems' order; report medians and the per-round ratio
                   spread (default 1; 3 or more on a shared, noisy machine)
  --out DIR        results directory (default bench/results/DATE-TIME)
  --keep           keep the temp dir (cluster data, per-transaction logs)
  --help           show this help

Every server runs in a temp dir under \${TMPDIR:-/tmp}, on 127.0.0.1 only,
and is stopped by pid when the run ends or fails. As root, PostgreSQL runs
as the user 'postgres'. Needs: pgbench, psql, PostgreSQL 15 server, jq,
gnuplot (installed with apt-get when missing).
EOF
}

bench_die() { echo "bench: $*" >&2; exit 1; }
log() { printf '%s %s\n' "$(date +%T)" "$*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --quick) quick=1; shift ;;
        --keep) keep=1; shift ;;
        --clients|--scale|--duration|--systems|--rounds|--out)
            [ $# -ge 2 ] || bench_die "$1 needs a value; see --help"
            case "$1" in
                --clients) clients_list=$2 ;;
                --scale) scale=$2; scale_set=1 ;;
                --duration) duration=$2; duration_set=1 ;;
                --systems) systems=$2 ;;
                --rounds) rounds=$2 ;;
                --out) out=$2 ;;
            esac
            shift 2 ;;
        *) bench_die "unknown argument '$1'; see --help" ;;
    esac
done
if [ "$quick" -eq 1 ]; then
    [ "$scale_set" -eq 1 ] || scale=1
    [ "$duration_set" -eq 1 ] || duration=5
fi
[[ "$clients_list" =~ ^[0-9]+(,[0-9]+)*$ ]] || bench_die "--clients needs numbers separated by commas, e.g. 1,8,32 (got '$clients_list')"
IFS=, read -r -a CLIENTS <<<"$clients_list"
for c in "${CLIENTS[@]}"; do
    [ "$c" -ge 1 ] && [ "$c" -le 90 ] || bench_die "--clients: $c is outside 1..90 (PostgreSQL runs with max_connections = 100)"
done
[[ "$scale" =~ ^[0-9]+$ ]] && [ "$scale" -ge 1 ] || bench_die "--scale needs a positive number (got '$scale')"
[[ "$duration" =~ ^[0-9]+$ ]] && [ "$duration" -ge 1 ] || bench_die "--duration needs a positive number of seconds (got '$duration')"
[[ "$rounds" =~ ^[0-9]+$ ]] && [ "$rounds" -ge 1 ] && [ "$rounds" -le 20 ] || bench_die "--rounds needs a number from 1 to 20 (got '$rounds')"
IFS=, read -r -a SYSTEMS <<<"$systems"
for s in "${SYSTEMS[@]}"; do
    case ",$SYSTEMS_ALL," in *",$s,"*) ;; *) bench_die "--systems: unknown system '$s'; choose from $SYSTEMS_ALL" ;; esac
done
has_system() { case ",$systems," in *",$1,"*) return 0 ;; esac; return 1; }

for t in pgbench psql jq ss awk; do
    command -v "$t" >/dev/null || bench_die "$t is not installed; run 'bash deploy/install-deps.sh'"
done
FLOOR_BIN=$BUILD/bench/hexad-floor
[ -x "$FLOOR_BIN" ] || bench_die "$FLOOR_BIN is not built; build first (./hexad bench builds it: ninja -C $BUILD)"
if ! command -v gnuplot >/dev/null; then
    log "gnuplot is missing (for the chart); installing gnuplot-nox with apt-get"
    sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gnuplot-nox >/dev/null ||
        log "could not install gnuplot-nox; the run goes on without the chart"
fi

# shellcheck source=pg.sh
. "$BENCH_DIR/pg.sh"
if has_system pg-quorum || has_system pg-single; then pg_check_install; fi

[ -n "$out" ] || out=$REPO/bench/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
CSV=$out/results.csv
echo "system,workload,clients,duration_s,txns,failed,tps,lat_avg_ms,lat_p50_ms,lat_p99_ms,shipped_bytes_per_txn,round,cpu_ms_per_txn" >"$CSV"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hexad-bench.XXXXXX")
chmod 711 "$TMP"   # the PostgreSQL user must reach its directory inside
HX_DATA=$TMP/hexad
HX_STARTED=0
ROUND=1
PGBENCH_PID=""
FAILED=1

cleanup() {
    local rc=$?
    set +e
    if [ -n "$PGBENCH_PID" ]; then
        kill -TERM "$PGBENCH_PID" 2>/dev/null   # timeout passes it on to pgbench
        wait "$PGBENCH_PID" 2>/dev/null
    fi
    pg_stop_all
    if [ "$HX_STARTED" -eq 1 ]; then
        HEXAD_BUILD=$BUILD "$REPO/hexad" down --data "$HX_DATA" >>"$out/logs/hexad-up.log" 2>&1
    fi
    if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ] || [ "$keep" -eq 1 ]; then
        echo "bench: temp dir kept: $TMP" >&2
    else
        rm -rf -- "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'bench_die "interrupted"' INT TERM

# ------------------------------------------------------------ ports

# A base port B such that nothing listens on B+1..B+400: hexad storage
# B+1.., metrics B+101.., writer B+200, PostgreSQL B+301... B+400 stays
# below the kernel's ephemeral range (ip_local_port_range): an outgoing
# connection's local port (a storage node's gossip, say) must never be
# one a server then binds.
pick_base_port() {
    local p used eph=32768 span
    read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    span=$((eph - 401 - 20000))
    [ "$span" -gt 0 ] || bench_die "the ephemeral port range starts at $eph: no room for 400 ports between 20000 and it (see /proc/sys/net/ipv4/ip_local_port_range)"
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % span))
        used=$(ss -Hltn 2>/dev/null | awk -v lo="$p" -v hi=$((p + 400)) '{ sub(/.*:/, "", $4); if ($4 > lo && $4 <= hi) print $4 }')
        if [ -z "$used" ]; then echo "$p"; return 0; fi
    done
    bench_die "no free port range between 20000 and $eph after 50 tries"
}
BASE=$(pick_base_port)
HX_PG_PORT=$((BASE + 200))
PGQ_PORT=$((BASE + 301))
PGS_PORT=$((BASE + 310))

# ------------------------------------------------------------ one run

# Sum of bytes_acked over PID's established TCP sockets whose peer port is
# in LO..HI (hexad-compute -> storage nodes).
sent_bytes() {  # pid lo hi
    ss -Htinp state established 2>/dev/null | awk -v pid="pid=$1," -v lo="$2" -v hi="$3" '
        /^[^ \t]/ || /users:/ {
            mine = 0
            if (index($0, pid) > 0) {
                n = split($0, f, " ")
                for (i = 1; i <= n; i++) if (f[i] ~ /^127\.0\.0\.1:[0-9]+$/) peer = f[i]
                split(peer, hp, ":")
                if (hp[2] + 0 >= lo && hp[2] + 0 <= hi) mine = 1
            }
        }
        mine && match($0, /bytes_acked:[0-9]+/) {
            total += substr($0, RSTART + 12, RLENGTH - 12); mine = 0
        }
        END { printf "%d\n", total }'
}

# CPU clock ticks used so far by the processes ROOTS... and their live
# descendants, plus what the roots collected from their reaped children
# (PostgreSQL's backends end with their connections). From /proc/PID/stat:
# the fields after the ")" that closes the command name.
tree_cpu_ticks() {  # root pids...
    local roots=" $* "
    # A process that exits between the glob and its read fails cat.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v roots="$roots" '
        {
            pid = $1; rest = substr($0, index($0, ") ") + 2)
            split(rest, f, " ")   # f[2] = ppid, f[12..15] = utime stime cutime cstime
            ppid[pid] = f[2]; own[pid] = f[12] + f[13]; reaped[pid] = f[14] + f[15]
        }
        END {
            for (p in own) {
                for (q = p; q != "" && q != 0 && q != 1; q = ppid[q])
                    if (index(roots, " " q " ")) { total += own[p]; break }
                if (index(roots, " " p " ")) total += reaped[p]
            }
            printf "%d\n", total
        }'
}
CLK_TCK=$(getconf CLK_TCK)

# run_pgbench SYSTEM WORKLOAD CLIENTS PORT USER DB: one pgbench run, one
# line of results.csv. Bytes shipped come from the hook bytes_SYSTEM, the
# processes whose CPU counts from pids_SYSTEM.
run_pgbench() {
    local sys=$1 wl=$2 c=$3 port=$4 user=$5 db=$6 j dir b0 b1 rc=0
    local wl_args=(-b tpcb-like)
    [ "$wl" = tpcb-like ] || wl_args=(-f "$BENCH_DIR/insert-only.sql" -D "scale=$scale")
    j=$c; [ "$j" -le 2 ] || j=2   # 2 cores: more pgbench threads only compete
    dir=$TMP/runs/$sys-$wl-$c-r$ROUND
    mkdir -p "$dir"
    local f=$out/logs/pgbench-$sys-$wl-$c.log
    [ "$rounds" -eq 1 ] || f=$out/logs/pgbench-$sys-$wl-$c-r$ROUND.log
    b0=$("bytes_$sys")
    local c0 c1
    # shellcheck disable=SC2046 # a list of pids
    c0=$(tree_cpu_ticks $("pids_$sys"))
    # In the background and waited for: `wait` returns at once on a signal,
    # so Ctrl-C runs the cleanup now (timeout puts pgbench in a process
    # group of its own, out of reach of the terminal's Ctrl-C).
    timeout -k 10 $((duration + 300)) pgbench -n -M simple -h 127.0.0.1 -p "$port" -U "$user" \
        -c "$c" -j "$j" -T "$duration" --log --log-prefix="$dir/tx" "${wl_args[@]}" "$db" \
        >"$f" 2>&1 &
    PGBENCH_PID=$!
    wait "$PGBENCH_PID" || rc=$?
    PGBENCH_PID=""
    b1=$("bytes_$sys")
    # shellcheck disable=SC2046
    c1=$(tree_cpu_ticks $("pids_$sys"))
    [ "$rc" -eq 0 ] || bench_die "pgbench against $sys ($wl, $c clients) exited $rc; see $f"
    local tps txns failed avg
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$f")
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$f")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$f")
    avg=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$f")
    [ -n "$tps" ] && [ -n "$txns" ] || bench_die "no tps in $f"
    local pct
    # Per-transaction log: client, txn no, latency (us), script, epoch s, us.
    pct=$(cat "$dir"/tx.* | awk '{ print $3 }' | sort -n | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "0 0"; exit }
            i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
            printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000
        }')
    [ "$keep" -eq 1 ] || rm -f "$dir"/tx.*
    local per_txn="" cpu=""
    if [ -n "$b0" ] && [ "$txns" -gt 0 ]; then per_txn=$(( (b1 - b0) / txns )); fi
    if [ "$txns" -gt 0 ]; then
        cpu=$(awk -v d=$((c1 - c0)) -v n="$txns" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", d * 1000 / hz / n }')
    fi
    echo "$sys,$wl,$c,$duration,$txns,${failed:-0},$tps,$avg,${pct% *},${pct#* },$per_txn,$ROUND,$cpu" >>"$CSV"
    log "  $sys $wl c=$c: tps $tps, p50 ${pct% *} ms, p99 ${pct#* } ms${per_txn:+, $per_txn B shipped/txn}${cpu:+, $cpu ms CPU/txn}"
}

run_workloads() {  # system port user db
    local wl c
    for wl in tpcb-like insert-only; do
        for c in "${CLIENTS[@]}"; do
            run_pgbench "$1" "$wl" "$c" "$2" "$3" "$4"
        done
    done
}

# What was measured, on what: the figures mean little without it.
{
    echo "date=$(date -u +%FT%TZ)"
    echo "commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo '+uncommitted changes')"
    echo "build=$BUILD"
    echo "cpus=$(nproc)"
    echo "cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "args=--clients $clients_list --scale $scale --duration $duration --systems $systems --rounds $rounds"
} >"$out/machine.txt"

# ------------------------------------------------------------ floor

# Measured before and after the systems run; the lower floor is kept in
# floor.txt (a floor is what the machine can do, and a shared machine's
# disk is sometimes much slower for a while).
measure_floor() {  # when -> writes $out/floor-WHEN.txt
    "$FLOOR_BIN" --dir "$TMP" --samples 500 >"$out/floor-$1.txt" ||
        bench_die "hexad-floor failed in $TMP"
    log "  $1: fdatasync 4 KiB p50 $(sed -n 's/^fsync_overwrite_p50_us=//p' "$out/floor-$1.txt") us" \
        "(append $(sed -n 's/^fsync_append_p50_us=//p' "$out/floor-$1.txt") us)," \
        "loopback RTT p50 $(sed -n 's/^rtt_p50_us=//p' "$out/floor-$1.txt") us:" \
        "floor $(sed -n 's/^floor_us=//p' "$out/floor-$1.txt") us"
}
log "== physical floor (hexad-floor --dir $TMP)"
measure_floor before

# ------------------------------------------------------------ hexad

HX_COMPUTE_PID=""
bytes_hexad() { sent_bytes "$HX_COMPUTE_PID" $((BASE + 1)) $((BASE + 99)); }
bytes_pg-quorum() { echo $(( $(pg_wal_bytes "$PGQ_PORT") * PG_STANDBYS )); }
bytes_pg-single() { echo ""; }
pids_hexad() { cat "$HX_DATA"/run/*.pid 2>/dev/null; }
pids_pg-quorum() { echo "${PG_PIDS[@]}"; }
pids_pg-single() { echo "${PG_PIDS[@]}"; }

run_hexad() {
    log "== hexad: fresh cluster in $HX_DATA (build $BUILD, storage ports $((BASE + 1))-$((BASE + 9)), writer $HX_PG_PORT)"
    rm -rf -- "$HX_DATA"
    mkdir -p "$HX_DATA"
    bash "$REPO/deploy/local/gen-cluster.sh" --data "$HX_DATA" --base-port "$BASE" \
        --pg-port "$HX_PG_PORT" --out "$HX_DATA/cluster.conf"
    HX_STARTED=1
    HEXAD_BUILD=$BUILD "$REPO/hexad" up --data "$HX_DATA" >>"$out/logs/hexad-up.log" 2>&1 ||
        bench_die "starting the hexad cluster failed; see $out/logs/hexad-up.log"
    HX_COMPUTE_PID=$(cat "$HX_DATA/run/w1.pid")
    HEXAD_BUILD=$BUILD "$REPO/hexad" bench-init --data "$HX_DATA" --scale "$scale" |
        tee "$out/logs/hexad-init.log" | grep -E 'done|creating' || bench_die "bench-init failed; see $out/logs/hexad-init.log"
    run_workloads hexad "$HX_PG_PORT" hexad hexad
    cp "$HX_DATA/logs/"*.log "$out/logs/" 2>/dev/null || true
    HEXAD_BUILD=$BUILD "$REPO/hexad" down --data "$HX_DATA" >>"$out/logs/hexad-up.log" 2>&1
    HX_STARTED=0
}

# ------------------------------------------------------------ PostgreSQL

PGDIR=$TMP/pg
if has_system pg-quorum || has_system pg-single; then
    mkdir -p "$PGDIR"
    [ "$(id -u)" -ne 0 ] || chown "$PG_USER:" "$PGDIR"
fi
pg_init_tables() {  # port
    pgbench -i -q -s "$scale" -h 127.0.0.1 -p "$1" -U postgres postgres >"$out/logs/pgbench-init-$1.log" 2>&1 ||
        bench_die "pgbench -i on port $1 failed; see $out/logs/pgbench-init-$1.log"
}
# Each round starts from fresh data directories; the last round's stay
# for the logs copied below.
pg_fresh_dir() {  # name -> path
    pg_as rm -rf -- "$PGDIR/$1"
    echo "$PGDIR/$1"
}
run_pg_quorum() {
    log "== pg-quorum: primary + $PG_STANDBYS standbys in $PGDIR"
    pg_quorum_start "$(pg_fresh_dir q)" "$PGQ_PORT"
    pg_init_tables "$PGQ_PORT"
    run_workloads pg-quorum "$PGQ_PORT" postgres postgres
    pg_stop_all
}
run_pg_single() {
    log "== pg-single in $PGDIR"
    pg_single_start "$(pg_fresh_dir s)" "$PGS_PORT"
    pg_init_tables "$PGS_PORT"
    run_workloads pg-single "$PGS_PORT" postgres postgres
    pg_stop_all
}

# ------------------------------------------------------------ rounds

for ROUND in $(seq 1 "$rounds"); do
    [ "$rounds" -eq 1 ] || log "== round $ROUND of $rounds"
    order=("${SYSTEMS[@]}")
    if [ $((ROUND % 2)) -eq 0 ]; then   # reversed: drift falls on both sides
        order=()
        for ((i = ${#SYSTEMS[@]} - 1; i >= 0; i--)); do order+=("${SYSTEMS[i]}"); done
    fi
    for sys in "${order[@]}"; do
        case "$sys" in
            hexad) run_hexad ;;
            pg-quorum) run_pg_quorum ;;
            pg-single) run_pg_single ;;
        esac
    done
done
cp "$PGDIR"/*/*.log "$out/logs/" 2>/dev/null || true

# ------------------------------------------------------------ report

echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
log "== physical floor, again"
measure_floor after
best=$(awk -v b="$(sed -n 's/^floor_us=//p' "$out/floor-before.txt")" \
    -v a="$(sed -n 's/^floor_us=//p' "$out/floor-after.txt")" 'BEGIN { print (a + 0 < b + 0) ? "after" : "before" }')
cp "$out/floor-$best.txt" "$out/floor.txt"
echo "measured_when=$best" >>"$out/floor.txt"

bash "$BENCH_DIR/report.sh" --csv "$CSV" --floor "$out/floor.txt" --out "$out"
FAILED=0
log "results in $out"
