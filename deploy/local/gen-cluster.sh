#!/usr/bin/env bash
# Writes a cluster file for a cluster on one machine (AZs simulated).
# README.md ("The cluster file") documents every key.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/local/gen-cluster.sh --data DIR [options]

Writes a hexad cluster file to stdout (or to --out FILE): AZS*PER_AZ storage
nodes s1..sN on 127.0.0.1 (s1..s3 in az1, s4..s6 in az2, ... with the
defaults) and one writer w1 (metrics on --base-port + 100: 7200 by default).

  --data DIR        data root; node sI stores in DIR/sI (required; made absolute)
  --azs N           number of AZs (default 3; a PG needs 3 AZs with 2 nodes)
  --per-az N        storage nodes per AZ (default 3; 2 per PG + 1 spare)
  --base-port P     storage node sI listens on P+I, metrics on P+100+I;
                    the writer's metrics on P+100 (default 7100 -> 7101..,
                    metrics 7201.., writer metrics 7200)
  --host H          address the nodes bind (default 127.0.0.1)
  --pg-port P       PostgreSQL port of the writer w1 (default 7433)
  --pg-pages N      pages per protection group (default: 10 GiB of pages,
                    Aurora's segment size; 2621440 at 4096-byte pages)
  --page-size N     page size in bytes, power of two 512..65536 (default 4096)
  --journal-mib N   each node's write-ahead journal, 1..65536 MiB (default: the
                    nodes' own default, 64; written in full when a node first starts)
  --name NAME       cluster name (default local)
  --out FILE        write the file there instead of stdout
  --help            show this help

Example:
  deploy/local/gen-cluster.sh --data /tmp/hx --base-port 23000 --out /tmp/hx/cluster.conf
EOF
}

die() { echo "gen-cluster.sh: $*" >&2; exit 2; }

need_num() {  # name value
    [[ "$2" =~ ^[0-9]+$ ]] || die "$1 needs a number, got '$2'"
}

data="" azs=3 per_az=3 base_port=7100 host=127.0.0.1 pg_port=7433
pg_pages="" page_size=4096 journal_mib="" name=local out=""

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --data|--azs|--per-az|--base-port|--host|--pg-port|--pg-pages|--page-size|--journal-mib|--name|--out)
            [ $# -ge 2 ] || die "$1 needs a value; see --help"
            case "$1" in
                --data) data=$2 ;;
                --azs) need_num "$1" "$2"; azs=$2 ;;
                --per-az) need_num "$1" "$2"; per_az=$2 ;;
                --base-port) need_num "$1" "$2"; base_port=$2 ;;
                --host) host=$2 ;;
                --pg-port) need_num "$1" "$2"; pg_port=$2 ;;
                --pg-pages) need_num "$1" "$2"; pg_pages=$2 ;;
                --page-size) need_num "$1" "$2"; page_size=$2 ;;
                --journal-mib) need_num "$1" "$2"; journal_mib=$2 ;;
                --name) name=$2 ;;
                --out) out=$2 ;;
            esac
            shift 2 ;;
        *) die "unknown argument '$1'; see --help" ;;
    esac
done

[ -n "$data" ] || die "--data DIR is required (where the nodes keep their segments); see --help"
[ "$azs" -ge 3 ] || die "--azs must be at least 3: a protection group puts 2 segments in each of 3 AZs"
[ "$per_az" -ge 2 ] || die "--per-az must be at least 2: a protection group puts 2 segments in each AZ"
n=$((azs * per_az))
[ "$n" -le 64 ] || die "at most 64 storage nodes (got $azs x $per_az = $n)"
if [ "$base_port" -lt 1 ] || [ $((base_port + 100 + n)) -gt 65535 ]; then
    die "--base-port $base_port leaves no room for $n nodes and their metrics ports (P+100+N <= 65535)"
fi
if [ "$pg_port" -lt 1 ] || [ "$pg_port" -gt 65535 ]; then
    die "--pg-port must be 1..65535"
fi
if [ "$page_size" -lt 512 ] || [ "$page_size" -gt 65536 ] || [ $((page_size & (page_size - 1))) -ne 0 ]; then
    die "--page-size must be a power of two from 512 to 65536"
fi
[ -n "$pg_pages" ] || pg_pages=$(((10 << 30) / page_size))
if [ -n "$journal_mib" ] && { [ "$journal_mib" -lt 1 ] || [ "$journal_mib" -gt 65536 ]; }; then
    die "--journal-mib must be 1..65536"
fi
[ "$pg_pages" -ge 1 ] || die "--pg-pages must be at least 1"
case "$data" in /*) ;; *) data="$(pwd)/$data" ;; esac
data=${data%/}
[[ "$data" =~ [[:space:]#] ]] && die "--data '$data' contains a blank or '#'; the cluster file cannot hold it"

emit() {
    echo "# hexad cluster file, written by deploy/local/gen-cluster.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# $n storage nodes in $azs AZs ($per_az per AZ), one writer. See README.md."
    echo "cluster name=$name volume=1 page_size=$page_size pg_pages=$pg_pages lal=1000000 commit_timeout_ms=30000"
    local i=1 a k
    for ((a = 1; a <= azs; a++)); do
        for ((k = 1; k <= per_az; k++)); do
            echo "storage id=s$i az=az$a addr=$host:$((base_port + i)) metrics=$host:$((base_port + 100 + i)) data=$data/s$i${journal_mib:+ journal_mib=$journal_mib}"
            i=$((i + 1))
        done
    done
    echo "compute id=w1 role=writer az=az1 addr=$host:$pg_port metrics=$host:$((base_port + 100))"
}

if [ -n "$out" ]; then
    mkdir -p "$(dirname "$out")"
    emit >"$out.tmp.$$"
    mv "$out.tmp.$$" "$out"
else
    emit
fi
