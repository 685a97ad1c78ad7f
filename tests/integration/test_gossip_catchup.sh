#!/usr/bin/env bash
# Issue 7 "Gossip": a storage node catches up from its PG's peers on its
# own; the writer never re-sends (proto/README.md "Gossip").
#
#   (a) node X, a member of PG 0, is SIGKILLed; 10,000 commits are loaded
#       (hexadctl load) and the loader exits, so nothing is ever re-sent
#       to X. X restarts: within CATCHUP_DEADLINE_S its SCL equals its
#       peers' (the time is reported), its epoch is theirs (it missed the
#       loader's recovery), its counters show the records came by
#       gossip, and all six copies of page 0 are the same bytes
#       (hexadctl page);
#   (b) reads from X's data: the other five members are SIGKILLed, three
#       of them lose their whole data directory and restart empty. They
#       never saw the segment's creation: they learn it from X's segment
#       list and pull everything from X, the only copy alive. `hexadctl
#       verify` then reads all 10,100 writes back through them and X (4 of
#       6: its recovery records a truncation on a write quorum) and checks
#       every byte: every byte it reads came from X;
#   (c) that verify was a recovery (epoch bump + truncation above VDL) the
#       two other members missed while down. Restarted, they learn the
#       epoch and the truncation by gossip alone (same epoch, truncation
#       ranges and SCL as X); with X and one rebuilt node SIGKILLed, a
#       second verify (4 of 6, the two among them) reads everything back.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hx_require_bins HEXAD_STORAGE_BIN HEXADCTL_BIN
command -v curl >/dev/null || hx_fail "curl is not installed; run 'bash deploy/install-deps.sh'"
command -v jq >/dev/null || hx_fail "jq is not installed; run 'bash deploy/install-deps.sh'"

VOL=2
FIRST=100               # writes before X goes down
COUNT=10000             # writes while X is down
CATCHUP_DEADLINE_S=60   # X complete again after its restart
LOAD_DEADLINE_S=300
J=$HX_TMP/journal

st() { hx_ctl --volume "$VOL" status --json 2>>"$HX_LOGS/ctl-status.log"; }

# "node scl truncations truncated_to" of every member of PG 0, from a
# status JSON (default: a fresh one).
pg0() {
    local json=${1:-}
    [ -n "$json" ] || json=$(st) || return 1
    jq -r '.pgs[] | select(.pg == 0) | .members[] |
           "\(.node) \(if .reachable then .scl else "down" end) \(.truncations) \(.truncated_to)"' <<<"$json"
}
member_field() {  # id field(2=scl,3=truncations,4=truncated_to)
    pg0 | awk -v id="$1" -v f="$2" '$1 == id { print $f }'
}
node_field() {  # id json-field
    st | jq -r --arg id "$1" --arg f "$2" '.nodes[] | select(.id == $id) | .[$f]'
}
data_dir() {
    awk -v id="$1" '$1 == "storage" {
            d = ""; m = 0
            for (i = 2; i <= NF; i++) {
                if ($i == "id=" id) m = 1
                if ($i ~ /^data=/) d = substr($i, 6)
            }
            if (m) { print d; exit }
        }' "$HX_CONF"
}

# True when every listed node reports the same SCL, truncations and epoch
# as node REF for PG 0 (and REF is reachable).
same_as() {  # ref ids...
    local ref=$1 rows line id json epochs want
    shift
    json=$(st) || return 1
    rows=$(pg0 "$json") || return 1
    want=$(awk -v id="$ref" '$1 == id { print $2, $3, $4 }' <<<"$rows")
    [ -n "$want" ] && [ "${want%% *}" != down ] || return 1
    for id in "$@"; do
        line=$(awk -v id="$id" '$1 == id { print $2, $3, $4 }' <<<"$rows")
        [ "$line" = "$want" ] || return 1
        epochs=$(jq -r --arg a "$ref" --arg b "$id" \
            '[.nodes[] | select(.id == $a or .id == $b) | .volume_epoch] | unique | length' <<<"$json")
        [ "$epochs" = 1 ] || return 1
    done
}

# X's SCL of volume VOL, PG 0, from its /metrics (a cheap poll).
metrics_scl() {  # id
    local addr
    addr=$(awk -v id="$1" '$1 == "storage" {
            a = ""; m = 0
            for (i = 2; i <= NF; i++) {
                if ($i == "id=" id) m = 1
                if ($i ~ /^metrics=/) a = substr($i, 9)
            }
            if (m) { print a; exit }
        }' "$HX_CONF")
    curl -sS --max-time 2 "http://$addr/metrics" |
        awk -v want="hexad_segment_scl{node=\"$1\",volume=\"$VOL\",pg=\"0\"}" \
            '$1 == want { print $2; f = 1 } END { exit !f }'
}

run_load() {  # start count
    timeout -k 5 "$LOAD_DEADLINE_S" "$HEXADCTL_BIN" --cluster "$HX_CONF" --volume "$VOL" \
        load --start "$1" --count "$2" --journal "$J" >>"$HX_LOGS/load.log" 2>&1 ||
        hx_fail "load of $2 writes from $1 failed; see $HX_LOGS/load.log"
}

run_verify() {  # what
    hx_ctl_t 300 --volume "$VOL" verify --journal "$J" >"$HX_LOGS/verify-$1.log" 2>&1 ||
        hx_fail "verify ($1) failed: $(tail -3 "$HX_LOGS/verify-$1.log")"
    grep -q "^verified $((FIRST + COUNT)) writes" "$HX_LOGS/verify-$1.log" ||
        hx_fail "verify ($1): $(cat "$HX_LOGS/verify-$1.log")"
}

hx_cluster_start
run_load 0 "$FIRST"
mapfile -t MEMBERS < <(pg0 | awk '{ print $1 }')
[ "${#MEMBERS[@]}" = 6 ] || hx_fail "PG 0 of volume $VOL has ${#MEMBERS[@]} members, not 6"
X=${MEMBERS[0]}
OTHERS=("${MEMBERS[@]:1}")
hx_log "PG 0 members: ${MEMBERS[*]}; X = $X"

# (a)
hx_kill_node "$X"
t0=$(hx_now_ms)
run_load "$FIRST" "$COUNT"
hx_log "loaded $COUNT commits with $X down in $(( $(hx_now_ms) - t0 )) ms; the loader has exited"
[ "$(hx_lines "$J")" = $((FIRST + COUNT)) ] || hx_fail "journal holds $(hx_lines "$J") writes, not $((FIRST + COUNT))"
# The loader exited once a write quorum held each write: the five settle
# among themselves (gossip) before X comes back.
wait_until "same_as ${OTHERS[*]}" 30 0.2 || hx_fail "the five members of PG 0 disagree: $(pg0 | tr '\n' ';')"
peer_scl=$(member_field "${OTHERS[0]}" 2)
hx_start_node "$X"
t0=$(hx_now_ms)
wait_until "[ \"\$(metrics_scl $X)\" = $peer_scl ]" "$CATCHUP_DEADLINE_S" 0.05 ||
    hx_fail "$X did not reach SCL $peer_scl within ${CATCHUP_DEADLINE_S} s: $(pg0 | tr '\n' ';')"
catchup_ms=$(( $(hx_now_ms) - t0 ))
wait_until "same_as ${OTHERS[0]} $X" 10 0.2 ||
    hx_fail "$X reached SCL $peer_scl but differs from ${OTHERS[0]}: $(pg0 | tr '\n' ';')"
wait_until "same_as $X ${OTHERS[*]}" 10 0.2 || hx_fail "PG 0 members disagree: $(pg0 | tr '\n' ';')"
got=$(node_field "$X" gossip_records)
[ "$got" -ge "$COUNT" ] || hx_fail "$X stored only $got records by gossip (>= $COUNT expected)"
# Every copy of a page is the same bytes (hexadctl page asks each member).
# --dump creates its directory and writes the six images, the same bytes.
page=$(hx_ctl --volume "$VOL" page --page 0 --dump "$HX_TMP/pages" 2>&1) ||
    hx_fail "hexadctl page: the members of PG 0 serve page 0 differently, or an image was not written: $page"
[ "$(grep -c ' crc32c ' <<<"$page")" = 6 ] || hx_fail "not all 6 members of PG 0 served page 0: $page"
imgs=("$HX_TMP"/pages/page-0-at-*.bin)
[ "${#imgs[@]}" = 6 ] || hx_fail "--dump wrote ${#imgs[@]} images, not 6: ${imgs[*]}"
for f in "${imgs[@]}"; do
    cmp -s "${imgs[0]}" "$f" || hx_fail "--dump images differ: ${imgs[0]} $f"
done
epochs=$(node_field "$X" gossip_epochs)
[ "$epochs" -ge 1 ] || hx_fail "$X adopted no volume epoch by gossip, yet it missed the loader's recovery"
hx_pass "(a) $X caught up by gossip alone in ${catchup_ms} ms (SCL $peer_scl, $got records pulled, epoch adopted)"

# (b)
for id in "${OTHERS[@]}"; do hx_kill_node "$id"; done
WIPED=("${OTHERS[@]:0:3}")
for id in "${WIPED[@]}"; do rm -rf -- "$(data_dir "$id")"; done
for id in "${WIPED[@]}"; do hx_start_node "$id"; done
t0=$(hx_now_ms)
wait_until "same_as $X ${WIPED[*]}" "$CATCHUP_DEADLINE_S" 0.2 ||
    hx_fail "${WIPED[*]} (empty) did not rebuild PG 0 from $X within ${CATCHUP_DEADLINE_S} s: $(pg0 | tr '\n' ';')"
rebuild_ms=$(( $(hx_now_ms) - t0 ))
for id in "${WIPED[@]}"; do
    [ "$(node_field "$id" gossip_segments)" -ge 1 ] || hx_fail "$id did not learn PG 0 from a segment list"
done
run_verify from-x
hx_pass "(b) ${WIPED[*]}, wiped, learned PG 0 from $X and copied it in ${rebuild_ms} ms; all $((FIRST + COUNT)) writes read back from $X's data"

# (c)
REST=("${OTHERS[@]:3}")
for id in "${REST[@]}"; do hx_start_node "$id"; done
t0=$(hx_now_ms)
wait_until "same_as $X ${REST[*]}" "$CATCHUP_DEADLINE_S" 0.2 ||
    hx_fail "${REST[*]} did not learn the recovery by gossip within ${CATCHUP_DEADLINE_S} s: $(pg0 | tr '\n' ';')"
learn_ms=$(( $(hx_now_ms) - t0 ))
trunc=$(member_field "$X" 3)
[ "$trunc" -ge 1 ] || hx_fail "$X records no truncation after two recoveries"
for id in "${REST[@]}"; do
    [ "$(node_field "$id" gossip_truncations)" -ge 1 ] || hx_fail "$id adopted no truncation by gossip"
done
for id in "$X" "${WIPED[0]}"; do hx_kill_node "$id"; done
run_verify from-rest
hx_pass "(c) ${REST[*]} learned the epoch and $trunc truncation range(s) by gossip in ${learn_ms} ms; every write reads back through them"
