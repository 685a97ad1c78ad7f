#!/usr/bin/env bash
# Issue 7: a storage node's background work, on a real 9-node cluster.
#
#   (b) scrub and repair: a PG 0 member is stopped, records inside its
#       RocksDB are corrupted (hexad-storage --corrupt-records), it is
#       restarted: every corrupt record is detected and rewritten from a
#       peer's copy (counted in its log), and every acknowledged write reads
#       back (hexadctl verify: no client sees a corrupt byte).
#   (c) lost writes: the same member is stopped again and DROP records
#       below their segment's SCL are deleted (hexad-storage
#       --drop-records), as a lost write leaves a store; restarted, its
#       scrub finds every one missing (records_missing), it refetches each
#       from a peer (repairs), and then all six copies of each of the 100
#       pages are the same bytes (hexadctl page) and every write reads back;
#   (a) garbage collection: 100 thousand updates of the same 100 pages;
#       with retention_s=2 every PG 0 member's data directory ends under
#       LIVE_BOUND_KB of data (du --apparent-size) and DISK_BOUND_KB of
#       allocated blocks (du), and everything still reads back.
#
# (b) and (c) run first, with the default retention (nothing collected),
# so the records they damage are still there; (a) restarts every node with
# retention_s=2.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hx_require_bins HEXAD_STORAGE_BIN HEXADCTL_BIN
command -v jq >/dev/null || hx_fail "jq is not installed; run 'bash deploy/install-deps.sh'"

VOL=2                   # load/verify's own volume
PAGES=100
CORRUPT=20              # records corrupted in (b)
DROP=10                 # records deleted in (c)
REPAIR_DEADLINE_S=60
UPDATES=100000
LOAD_DEADLINE_S=900
GC_DEADLINE_S=120
# Live data of a PG 0 member after GC: 100 page versions of 4 KiB (one
# base each, maybe one newer) = 0.4-0.8 MiB, the records not yet covered
# by a base, RocksDB's small files (MANIFEST, OPTIONS, the current WAL
# after the GC's compaction) and its info LOGs (at most 4 of 1 MiB, in
# practice a few hundred KiB). Without GC the same member would hold all
# 100 thousand records (~100 B each, about 10 MB: the test prints what it
# received) and a page version per page and coalescing pass (tens of MB).
# Plus the write-ahead journal, a file of fixed size (JOURNAL_MIB).
JOURNAL_MIB=4
LIVE_BOUND_KB=$((4096 + JOURNAL_MIB * 1024))
# Allocated blocks add RocksDB's preallocation, fixed whatever the data:
# a WAL file (at most 1.1 x write_buffer_size of 16 MiB = 17.6 MiB; with
# the journal, RocksDB's WAL stays nearly empty) and the MANIFEST (4 MiB).
DISK_BOUND_KB=$((LIVE_BOUND_KB + 22 * 1024 + 1024))

hx_pick_ports 64
bash "$HX_REPO/deploy/local/gen-cluster.sh" --data "$HX_TMP/data" \
    --base-port "$HX_BASE_PORT" --pg-port $((HX_BASE_PORT + 200)) \
    --journal-mib "$JOURNAL_MIB" --out "$HX_CONF" >/dev/null
mapfile -t IDS < <(hx_storage_ids)
for id in "${IDS[@]}"; do hx_start_node "$id"; done
hx_log "cluster up: ${#IDS[@]} storage nodes, dir $HX_TMP"

ctl() { hx_ctl_t "$1" --volume "$VOL" "${@:2}"; }

# The data directory of node $1 (the cluster file's data=).
data_dir() {
    awk -v id="$1" '$1 == "storage" && $0 ~ ("id=" id " ") {
        for (i = 2; i <= NF; i++) if ($i ~ /^data=/) print substr($i, 6) }' "$HX_CONF"
}

pg0_members() {
    ctl 60 status --json 2>>"$HX_LOGS/ctl-status.log" |
        jq -r '.pgs[] | select(.pg == 0) | .members[] | .node' | sort
}

counter() {  # node name -> that counter of the node (hexadctl status --json)
    ctl 60 status --json 2>>"$HX_LOGS/ctl-status.log" |
        jq --arg n "$1" --arg c "$2" '[.nodes[] | select(.id == $n) | .[$c]] | first // 0'
}

# ---- (b) corruption is detected, repaired from a peer, never read -------

J1=$HX_TMP/journal-b
ctl 300 load --count 5000 --pages "$PAGES" --journal "$J1" \
    >"$HX_LOGS/load-b.log" 2>&1 || hx_fail "load of 5000 writes failed (see $HX_LOGS/load-b.log)"
[ "$(hx_lines "$J1")" -eq 5000 ] || hx_fail "load acknowledged $(hx_lines "$J1") of 5000 writes"
mapfile -t MEMBERS < <(pg0_members)
[ "${#MEMBERS[@]}" -eq 6 ] || hx_fail "PG 0 has ${#MEMBERS[@]} members, expected 6"
X=${MEMBERS[0]}
hx_stop_node "$X"
"$HEXAD_STORAGE_BIN" --cluster "$HX_CONF" --id "$X" --corrupt-records "$CORRUPT" \
    >"$HX_TMP/corrupted" 2>>"$HX_LOGS/$X.log" || hx_fail "hexad-storage --corrupt-records failed"
n_bad=$(hx_lines "$HX_TMP/corrupted")
[ "$n_bad" -eq "$CORRUPT" ] || hx_fail "$n_bad records corrupted, expected $CORRUPT"
t0=$(hx_now_ms)
hx_start_node "$X"
ctl 300 verify --journal "$J1" --pages "$PAGES" >"$HX_LOGS/verify-b1.log" 2>&1 ||
    hx_fail "verify right after the restart of $X with $CORRUPT corrupt records failed (see $HX_LOGS/verify-b1.log)"
wait_until "[ \$(counter $X repairs) -ge $CORRUPT ]" "$REPAIR_DEADLINE_S" 0.2 ||
    hx_fail "$X repaired $(counter "$X" repairs) of $CORRUPT corrupt records within ${REPAIR_DEADLINE_S}s"
repair_ms=$(( $(hx_now_ms) - t0 ))
failures=$(counter "$X" checksum_failures)
[ "$failures" -eq "$CORRUPT" ] ||
    hx_fail "$X counted $failures checksum failures, expected $CORRUPT"
[ "$(grep -c 'repaired from a peer' "$HX_LOGS/$X.log")" -eq "$CORRUPT" ] ||
    hx_fail "$X logged $(grep -c 'repaired from a peer' "$HX_LOGS/$X.log") repairs, expected $CORRUPT"
ctl 300 verify --journal "$J1" --pages "$PAGES" >"$HX_LOGS/verify-b2.log" 2>&1 ||
    hx_fail "verify after the repairs failed (see $HX_LOGS/verify-b2.log)"
hx_pass "(b) $CORRUPT corrupt records on $X detected and repaired from peers within ${repair_ms} ms of its restart ($failures checksum failures counted); every write reads back"

# ---- (c) a lost write is found, refused, refetched from a peer ----------

hx_stop_node "$X"
"$HEXAD_STORAGE_BIN" --cluster "$HX_CONF" --id "$X" --drop-records "$DROP" \
    >"$HX_TMP/dropped" 2>>"$HX_LOGS/$X.log" || hx_fail "hexad-storage --drop-records failed"
[ "$(hx_lines "$HX_TMP/dropped")" -eq "$DROP" ] || hx_fail "$(hx_lines "$HX_TMP/dropped") records dropped, expected $DROP"
t0=$(hx_now_ms)
hx_start_node "$X"
wait_until "[ \$(counter $X records_missing) -ge $DROP ] && [ \$(counter $X repairs) -ge $DROP ]" "$REPAIR_DEADLINE_S" 0.2 ||
    hx_fail "$X found $(counter "$X" records_missing) of $DROP missing records and repaired $(counter "$X" repairs) within ${REPAIR_DEADLINE_S}s"
repair_ms=$(( $(hx_now_ms) - t0 ))
missing=$(counter "$X" records_missing)
[ "$missing" -eq "$DROP" ] || hx_fail "$X counted $missing missing records, expected $DROP"
for page in $(seq 0 $((PAGES - 1))); do
    out=$(ctl 60 page --page "$page" 2>&1) || hx_fail "the copies of page $page differ after the repairs: $out"
    [ "$(grep -c ' crc32c ' <<<"$out")" -eq 6 ] || hx_fail "not all 6 members served page $page: $out"
done
ctl 300 verify --journal "$J1" --pages "$PAGES" >"$HX_LOGS/verify-c.log" 2>&1 ||
    hx_fail "verify after the missing records came back failed (see $HX_LOGS/verify-c.log)"
hx_pass "(c) $DROP records deleted below the SCL on $X found missing and refetched from peers within ${repair_ms} ms of its restart; all 6 copies of the $PAGES pages agree and every write reads back"

# ---- (a) disk use stays bounded under updates of the same pages ---------

for id in "${IDS[@]}"; do hx_stop_node "$id"; done
sed -i 's/^cluster /cluster retention_s=2 /' "$HX_CONF"
for id in "${IDS[@]}"; do hx_start_node "$id"; done
J2=$HX_TMP/journal-a
t0=$(hx_now_ms)
ctl "$LOAD_DEADLINE_S" load --count "$UPDATES" --start 5000 --pages "$PAGES" --window 256 --journal "$J2" \
    >"$HX_LOGS/load-a.log" 2>&1 || hx_fail "load of $UPDATES updates failed (see $HX_LOGS/load-a.log)"
load_ms=$(( $(hx_now_ms) - t0 ))
[ "$(hx_lines "$J2")" -eq "$UPDATES" ] || hx_fail "load acknowledged $(hx_lines "$J2") of $UPDATES"

# The writer is gone (it sent its last min_read_lsn with its last
# appends): GC catches up to it within a couple of retention windows.
received=$(counter "$X" bytes_received)
t0=$(hx_now_ms)
kb_of() { du -sk "$(data_dir "$1")" | cut -f1; }
live_kb_of() { du -sk --apparent-size "$(data_dir "$1")" | cut -f1; }
all_small() {
    local m
    for m in "${MEMBERS[@]}"; do
        [ "$(live_kb_of "$m")" -le "$LIVE_BOUND_KB" ] && [ "$(kb_of "$m")" -le "$DISK_BOUND_KB" ] || return 1
    done
}
wait_until all_small "$GC_DEADLINE_S" 0.5 || {
    for m in "${MEMBERS[@]}"; do echo "$m: $(live_kb_of "$m") KiB data, $(kb_of "$m") KiB allocated" >&2; done
    hx_fail "PG 0 members still over $LIVE_BOUND_KB KiB of data or $DISK_BOUND_KB KiB allocated ${GC_DEADLINE_S}s after $UPDATES updates"
}
gc_ms=$(( $(hx_now_ms) - t0 ))
sizes=""
for m in "${MEMBERS[@]}"; do sizes="$sizes $m=$(live_kb_of "$m")/$(kb_of "$m")KiB"; done
ctl 300 verify --journal "$J2" --pages "$PAGES" >"$HX_LOGS/verify-a.log" 2>&1 ||
    hx_fail "verify after GC failed (see $HX_LOGS/verify-a.log)"
hx_pass "(a) $UPDATES updates of $PAGES pages in ${load_ms} ms ($X received $received bytes of records); ${gc_ms} ms later every PG 0 member is under $LIVE_BOUND_KB KiB of data and $DISK_BOUND_KB KiB allocated (data/allocated:$sizes); every write reads back"
