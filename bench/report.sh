#!/usr/bin/env bash
# Turns a benchmark's results.csv (bench/bench.sh) into the tables, the
# issue 5 targets, OUT/summary.json and OUT/tps.png. Re-runnable on an old
# results directory: bench/report.sh --csv DIR/results.csv --floor DIR/floor.txt --out DIR
set -euo pipefail

usage() {
    cat <<EOF
Usage: bench/report.sh --csv FILE --floor FILE --out DIR

Prints the benchmark tables (tps, latency p50/p99, hexad / pg-quorum;
with several rounds, medians and the range of the per-round ratios),
bytes shipped per transaction, single-client commit latency against the
floor, and the issue 5 targets met / not met; writes DIR/summary.json and,
when gnuplot is installed, DIR/tps.png.
EOF
}
die() { echo "report: $*" >&2; exit 1; }

csv="" floor="" out=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --csv|--floor|--out)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in --csv) csv=$2 ;; --floor) floor=$2 ;; --out) out=$2 ;; esac
            shift 2 ;;
        *) die "unknown argument '$1'; see --help" ;;
    esac
done
[ -f "$csv" ] && [ -f "$floor" ] && [ -d "$out" ] || die "--csv, --floor and --out must name an existing file, file and directory"

floor_us=$(sed -n 's/^floor_us=//p' "$floor")
floor_quorum_us=$(sed -n 's/^floor_quorum_us=//p' "$floor")

# field SYSTEM WORKLOAD CLIENTS COLUMN -> the value, or with several rounds
# their median; empty when there is none.
field() {
    awk -F, -v s="$1" -v w="$2" -v c="$3" -v col="$4" '
        NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
        $1 == s && $2 == w && $3 == c && $(idx[col]) != "" { v[++n] = $(idx[col]) }
        END {
            if (n == 0) exit
            for (i = 2; i <= n; i++)   # insertion sort, numerically
                for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
            if (n % 2) print v[(n + 1) / 2]
            else printf "%.3f\n", (v[n / 2] + v[n / 2 + 1]) / 2
        }' "$csv"
}
# The lowest and highest per-round ratio hexad / pg-quorum of tps, as
# "lo-hi", or empty with fewer than two rounds holding both.
ratio_range() {  # workload clients
    awk -F, -v w="$1" -v c="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
        $2 == w && $3 == c && ("round" in idx) {
            r = $(idx["round"]); if ($1 == "hexad") h[r] = $(idx["tps"]); if ($1 == "pg-quorum") p[r] = $(idx["tps"])
        }
        END {
            for (r in h) if ((r in p) && p[r] + 0 > 0) {
                x = h[r] / p[r]; n++
                if (n == 1 || x < lo) lo = x
                if (n == 1 || x > hi) hi = x
            }
            if (n >= 2) printf "%.2f-%.2f\n", lo, hi
        }' "$csv"
}
ratio() {  # a b -> a/b with 2 decimals, or "-"
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'
}

mapfile -t workloads < <(awk -F, 'NR > 1 { print $2 }' "$csv" | awk '!seen[$0]++')
mapfile -t clients < <(awk -F, 'NR > 1 { print $3 }' "$csv" | sort -n | uniq)
rounds=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "round") col = i; next }
    col && $col + 0 > n { n = $col + 0 } END { print (n > 0) ? n : 1 }' "$csv")
of_rounds=""
[ "$rounds" -eq 1 ] || of_rounds=", median of $rounds rounds"

if [ -f "$out/machine.txt" ]; then
    echo
    sed 's/^/  /' "$out/machine.txt"
fi
echo
echo "tps and latency (ms), pgbench -n -M simple, $(awk -F, 'NR == 2 { print $4 }' "$csv") s per run$of_rounds"
printf '%-12s %7s | %-24s | %-24s | %-24s | %s\n' workload clients \
    "hexad tps p50 p99" "pg-quorum tps p50 p99" "pg-single tps p50 p99" "hexad/pg-quorum tps"
for w in "${workloads[@]}"; do
    for c in "${clients[@]}"; do
        cells=()
        for s in hexad pg-quorum pg-single; do
            t=$(field "$s" "$w" "$c" tps)
            if [ -n "$t" ]; then
                cells+=("$(printf '%8.1f %6.2f %7.2f' "$t" "$(field "$s" "$w" "$c" lat_p50_ms)" "$(field "$s" "$w" "$c" lat_p99_ms)")")
            else
                cells+=("-")
            fi
        done
        spread=$(ratio_range "$w" "$c")
        printf '%-12s %7s | %-24s | %-24s | %-24s | %s%s\n' "$w" "$c" "${cells[@]}" \
            "$(ratio "$(field hexad "$w" "$c" tps)" "$(field pg-quorum "$w" "$c" tps)")" \
            "${spread:+ (rounds: $spread)}"
    done
done

if awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "cpu_ms_per_txn") found = 1 } END { exit !found }' "$csv"; then
    echo
    echo "CPU ms per transaction, the system's processes (not pgbench)$of_rounds: less noisy than tps on a shared machine"
    printf '%-12s %7s | %10s | %10s | %10s | %s\n' workload clients hexad pg-quorum pg-single "hexad/pg-quorum"
    for w in "${workloads[@]}"; do
        for c in "${clients[@]}"; do
            h=$(field hexad "$w" "$c" cpu_ms_per_txn)
            q=$(field pg-quorum "$w" "$c" cpu_ms_per_txn)
            p=$(field pg-single "$w" "$c" cpu_ms_per_txn)
            printf '%-12s %7s | %10s | %10s | %10s | %s\n' "$w" "$c" "${h:--}" "${q:--}" "${p:--}" "$(ratio "$h" "$q")"
        done
    done
fi

echo
echo "bytes shipped per committed transaction (hexad: hexad-compute -> storage; pg-quorum: WAL x 5 standbys)$of_rounds"
printf '%-12s %7s | %12s | %12s | %s\n' workload clients hexad pg-quorum "hexad/pg-quorum"
for w in "${workloads[@]}"; do
    for c in "${clients[@]}"; do
        h=$(field hexad "$w" "$c" shipped_bytes_per_txn)
        p=$(field pg-quorum "$w" "$c" shipped_bytes_per_txn)
        printf '%-12s %7s | %12s | %12s | %s\n' "$w" "$c" "${h:--}" "${p:--}" "$(ratio "$h" "$p")"
    done
done

# Targets (issue 5). Single-client commit latency: the insert-only
# workload at 1 client, where one transaction is one single-statement commit.
verdict() {  # value op limit -> met / not met / n/a
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "-" || v == "" || l == "") { print "n/a"; exit }
        ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
        print ok ? "met" : "not met" }'
}
r8=$(ratio "$(field hexad tpcb-like 8 tps)" "$(field pg-quorum tpcb-like 8 tps)")
r32=$(ratio "$(field hexad tpcb-like 32 tps)" "$(field pg-quorum tpcb-like 32 tps)")
lat1=$(field hexad insert-only 1 lat_p50_ms)
lat_ratio=$(ratio "$lat1" "$(awk -v f="$floor_us" 'BEGIN { if (f != "") print f / 1000 }')")
# Context, not a target: six copies on one machine share one device.
lat_q_ratio=$(ratio "$lat1" "$(awk -v f="$floor_quorum_us" 'BEGIN { if (f != "") print f / 1000 }')")
hb=$(field hexad tpcb-like 8 shipped_bytes_per_txn)
pb=$(field pg-quorum tpcb-like 8 shipped_bytes_per_txn)
bytes_ratio=$(ratio "$hb" "$pb")

echo
echo "targets (issue 5)"
printf '  %-58s %-8s -> %s\n' "tpcb-like 8 clients: hexad / pg-quorum >= 2" "$r8" "$(verdict "$r8" '>=' 2)"
printf '  %-58s %-8s -> %s\n' "tpcb-like 32 clients: hexad / pg-quorum >= 2" "$r32" "$(verdict "$r32" '>=' 2)"
printf '  %-58s %-8s -> %s\n' "1-client commit p50 (insert-only) / floor ${floor_us} us <= 1.5" "$lat_ratio" "$(verdict "$lat_ratio" '<=' 1.5)"
printf '  %-58s %-8s    (context: 6 concurrent fsyncs share this disk)\n' "1-client commit p50 / 4-of-6 fsync floor ${floor_quorum_us:-?} us" "$lat_q_ratio"
printf '  %-58s %-8s -> %s\n' "bytes/txn (tpcb-like, 8 clients) hexad / pg-quorum <= 0.25" "$bytes_ratio" "$(verdict "$bytes_ratio" '<=' 0.25)"

machine=$out/machine.txt
[ -f "$machine" ] || machine=/dev/null
jq -n --rawfile csv "$csv" --rawfile floor "$floor" --rawfile machine "$machine" \
    --arg r8 "$r8" --arg r32 "$r32" --arg lat1 "${lat1:-}" --arg latr "$lat_ratio" --arg br "$bytes_ratio" \
    --arg rounds "$rounds" --arg r8s "$(ratio_range tpcb-like 8)" --arg r32s "$(ratio_range tpcb-like 32)" '
    def num: if . == "-" or . == "" then null else tonumber end;
    ($csv | split("\n") | map(select(length > 0)) | map(split(","))) as $rows
    | ($rows[0]) as $h
    | {
        machine: ($machine | split("\n") | map(select(length > 0) | capture("^(?<k>[^=]*)=(?<v>.*)$") | {(.k): .v}) | add),
        floor: ($floor | split("\n") | map(select(length > 0) | split("=") | {(.[0]): (.[1] | tonumber? // .)}) | add),
        runs: [$rows[1:][] | [$h, .] | transpose | map({(.[0]): (.[1] | if test("^[0-9.]+$") then tonumber else . end)}) | add],
        rounds: ($rounds | tonumber),
        targets: {
          tpcb_8_clients_ratio: ($r8 | num), tpcb_32_clients_ratio: ($r32 | num),
          tpcb_8_clients_ratio_range: (if $r8s == "" then null else $r8s end),
          tpcb_32_clients_ratio_range: (if $r32s == "" then null else $r32s end),
          single_client_commit_p50_ms: ($lat1 | num), single_client_latency_over_floor: ($latr | num),
          bytes_per_txn_ratio: ($br | num)
        }
      }' >"$out/summary.json"

if command -v gnuplot >/dev/null; then
    plot=()
    for w in "${workloads[@]}"; do
        for s in hexad pg-quorum pg-single; do
            for c in "${clients[@]}"; do
                t=$(field "$s" "$w" "$c" tps)
                [ -z "$t" ] || echo "$c $t"
            done >"$out/tps-$s-$w.dat"
            [ -s "$out/tps-$s-$w.dat" ] && plot+=("'$out/tps-$s-$w.dat' using 1:2 with linespoints title '$s $w'")
        done
    done
    if [ "${#plot[@]}" -gt 0 ]; then
        joined=$(printf '%s, ' "${plot[@]}")
        gnuplot <<EOF || echo "report: gnuplot failed; no chart"
set terminal png size 900,560
set output '$out/tps.png'
set title 'pgbench -n -M simple: tps by clients (same machine, same run$of_rounds)'
set xlabel 'clients'
set ylabel 'transactions per second'
set logscale x 2
set key outside right
set grid
plot ${joined%, }
EOF
        rm -f "$out"/tps-*.dat
        [ -f "$out/tps.png" ] && echo && echo "chart: $out/tps.png"
    fi
fi
echo "data: $csv, $out/summary.json"
