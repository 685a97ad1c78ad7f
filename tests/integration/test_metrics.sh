#!/usr/bin/env bash
# Issue 7 "Metrics": every storage node serves GET /metrics in the
# Prometheus text format on the metrics address of its cluster-file line.
#
#   (a) before any load: 200, text/plain; version=0.0.4, counters at 0,
#       one line per counter labelled with the node's id, and the journal
#       gauges (used bytes within the ring's size);
#   (b) a bad path gets 404; an idle client that never sends its request
#       does not stop the node from answering scrapes (the endpoint runs
#       on the event loop and must not block it);
#   (c) after a load of N writes: the records received over all nodes are
#       at least 4 N at once (each acknowledged write reached a write
#       quorum of its PG) and 6 N soon (gossip brings the rest), the synced
#       batches moved, the frames took fewer bytes on the wire than
#       uncompressed (the writer compresses), and hexadctl status --json
#       reports the same counters (and journal size) as /metrics.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hx_require_bins HEXAD_STORAGE_BIN HEXADCTL_BIN
command -v curl >/dev/null || hx_fail "curl is not installed; run 'bash deploy/install-deps.sh'"
command -v jq >/dev/null || hx_fail "jq is not installed; run 'bash deploy/install-deps.sh'"

N=300
VOL=2

# The metrics address (host:port) of node ID, from the cluster file.
metrics_addr() {
    awk -v id="$1" '$1 == "storage" {
            a = ""; m = 0
            for (i = 2; i <= NF; i++) {
                if ($i == "id=" id) m = 1
                if ($i ~ /^metrics=/) a = substr($i, 9)
            }
            if (m) { print a; exit }
        }' "$HX_CONF"
}

scrape() {  # id -> the body, or fails
    curl -sS --max-time 5 "http://$(metrics_addr "$1")/metrics"
}

# The value of metric NAME{node="ID"} in a scrape of ID.
metric() {  # id name
    scrape "$1" | awk -v want="$2{node=\"$1\"}" '$1 == want { print $2; f = 1 } END { exit !f }'
}

sum_metric() {  # name -> sum over every node
    local id total=0 v
    for id in $(hx_storage_ids); do
        v=$(metric "$id" "$1") || hx_fail "node $id: no $1 in /metrics"
        total=$((total + v))
    done
    echo "$total"
}

hx_cluster_start --pg-pages 32

# (a)
hdr=$HX_TMP/headers
body=$(curl -sS --max-time 5 -D "$hdr" "http://$(metrics_addr s1)/metrics") ||
    hx_fail "GET /metrics on s1 ($(metrics_addr s1)) failed"
grep -qi '^HTTP/1.1 200' "$hdr" || hx_fail "GET /metrics: not 200: $(head -1 "$hdr")"
grep -qi '^Content-Type: text/plain; version=0.0.4' "$hdr" ||
    hx_fail "GET /metrics: wrong content type: $(grep -i content-type "$hdr")"
for name in records_received bytes_received batches_synced gossip_pulls \
            gossip_records gossip_truncations gossip_epochs gossip_segments \
            coalesce_passes page_versions_written gc_passes gc_records_removed \
            gc_page_versions_removed gc_bytes_removed gc_compactions checkpoints \
            scrub_passes checksum_failures repairs records_missing wire_bytes_received \
            frame_bytes_received; do
    grep -q "^# TYPE hexad_${name}_total counter$" <<<"$body" ||
        hx_fail "/metrics lacks the TYPE line of hexad_${name}_total"
    grep -q "^hexad_${name}_total{node=\"s1\"} [0-9][0-9]*$" <<<"$body" ||
        hx_fail "/metrics lacks hexad_${name}_total{node=\"s1\"}"
done
for name in journal_used_bytes journal_bytes segments_unverified; do
    grep -q "^# TYPE hexad_${name} gauge$" <<<"$body" ||
        hx_fail "/metrics lacks the TYPE line of hexad_${name}"
    grep -q "^hexad_${name}{node=\"s1\"} [0-9][0-9]*$" <<<"$body" ||
        hx_fail "/metrics lacks hexad_${name}{node=\"s1\"}"
done
[ "$(metric s1 hexad_records_received_total)" = 0 ] ||
    hx_fail "s1 received records before any load"
jbytes=$(metric s1 hexad_journal_bytes)
jused=$(metric s1 hexad_journal_used_bytes)
# journal_mib= is 1 MiB at least; the part a crash would replay fits in it.
[ "$jbytes" -ge $((1 << 20)) ] || hx_fail "s1's journal ring is $jbytes bytes, under 1 MiB"
[ "$jused" -le "$jbytes" ] || hx_fail "s1's journal: $jused bytes used of a $jbytes-byte ring"
hx_pass "(a) /metrics: 200, Prometheus text format, every counter and journal gauge of s1 listed"

# (b)
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$(metrics_addr s1)/nope")
[ "$code" = 404 ] || hx_fail "GET /nope answered $code, not 404"
maddr=$(metrics_addr s1)
exec 3<>"/dev/tcp/${maddr%:*}/${maddr##*:}" || hx_fail "cannot open a TCP connection to $maddr"
printf 'GET /met' >&3 # half a request line, never finished
scrape s1 >/dev/null || hx_fail "an idle half-open client blocked the metrics endpoint of s1"
exec 3>&-
hx_pass "(b) a bad path gets 404; a stalled client does not block scrapes"

# (c)
before_batches=$(sum_metric hexad_batches_synced_total)
hx_ctl --volume "$VOL" load --count "$N" --journal "$HX_TMP/journal" \
    >"$HX_LOGS/load.log" 2>&1 || hx_fail "load of $N writes failed; see $HX_LOGS/load.log"
[ "$(hx_lines "$HX_TMP/journal")" = "$N" ] || hx_fail "load acknowledged $(hx_lines "$HX_TMP/journal") of $N writes"
# Every acknowledged write reached a write quorum (4 of 6); the last
# members may get it only from gossip, after the loader exited (pulled
# records count as received too).
recs=$(sum_metric hexad_records_received_total)
[ "$recs" -ge $((4 * N)) ] || hx_fail "records received over all nodes: $recs < 4 x $N"
wait_until "[ \$(sum_metric hexad_records_received_total) -ge $((6 * N)) ]" 30 0.2 ||
    hx_fail "records received over all nodes stay below 6 x $N: $(sum_metric hexad_records_received_total)"
recs=$(sum_metric hexad_records_received_total)
batches=$(sum_metric hexad_batches_synced_total)
[ "$batches" -gt "$before_batches" ] || hx_fail "synced batches did not move ($before_batches -> $batches)"
bytes=$(sum_metric hexad_bytes_received_total)
[ "$bytes" -gt $((6 * N * 32)) ] || hx_fail "bytes received over all nodes: $bytes <= 6 x $N x 32 (a write carries 32 bytes)"
# The same numbers in hexadctl status --json, once the counters settle
# (gossip may still stage records it pulled).
same_counters() {
    local json j m
    json=$(hx_ctl --volume "$VOL" status --json) || return 1
    j=$(jq '[.nodes[].records_received] | add' <<<"$json")
    m=$(sum_metric hexad_records_received_total)
    [ "$j" = "$m" ] && [ "$j" -ge $((6 * N)) ]
}
wait_until same_counters 30 0.5 || hx_fail "hexadctl status --json and /metrics disagree on records received"
json=$(hx_ctl --volume "$VOL" status --json) || hx_fail "hexadctl status --json failed"
[ "$(jq '.nodes[] | select(.id == "s1") | .journal_bytes' <<<"$json")" = "$(metric s1 hexad_journal_bytes)" ] ||
    hx_fail "hexadctl status --json and /metrics disagree on s1's journal_bytes"
jq -e '.nodes[] | select(.id == "s1") | (.checkpoints | type) == "number" and (.journal_used_bytes | type) == "number" and .segments_unverified == 0' \
    <<<"$json" >/dev/null || hx_fail "hexadctl status --json lacks s1's checkpoints or journal_used_bytes, or has unverified segments after a clean start"
# The writer compresses its appends (wire_compression=zstd by default):
# the frames took fewer bytes on the wire than they decode to.
wire=$(sum_metric hexad_wire_bytes_received_total)
frame=$(sum_metric hexad_frame_bytes_received_total)
[ "$wire" -lt "$frame" ] || hx_fail "frames took $wire bytes on the wire for $frame uncompressed: not compressed"
jq -e '.nodes[] | select(.id == "s1") | .wire_bytes_received > 0 and .frame_bytes_received > 0' \
    <<<"$json" >/dev/null || hx_fail "hexadctl status --json lacks s1's wire_bytes_received or frame_bytes_received"
hx_pass "(c) after $N writes: $recs records ($bytes bytes) received over all nodes, batches $before_batches -> $batches, $frame frame bytes (uncompressed) in $wire on the wire; status --json agrees"

# (c2) Idle, coalescing reaches the point it may (the SCL, or the
# writer's min read point): status --json reports no lag on any node, and
# neither do s1's per-segment gauges.
caught_up() {
    local json lag body
    json=$(hx_ctl --volume "$VOL" status --json) || return 1
    lag=$(jq '[.nodes[].coalesce_lag] | max' <<<"$json")
    [ "$lag" = 0 ] || return 1
    body=$(scrape s1) || return 1
    ! grep '^hexad_segment_coalesce_lag{' <<<"$body" | grep -qv ' 0$'
}
wait_until caught_up 60 0.5 ||
    hx_fail "coalescing did not catch up when idle: status lag $(hx_ctl --volume "$VOL" status --json | jq -c '[.nodes[].coalesce_lag]')"
[ "$(scrape s1 | grep -c '^hexad_segment_coalesce_lag{')" -ge 1 ] ||
    hx_fail "s1 lists no hexad_segment_coalesce_lag gauge"
hx_pass "(c2) idle: coalescing caught up on every node (status coalesce_lag 0, and s1's per-segment gauges)"
