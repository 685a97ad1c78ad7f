#!/usr/bin/env bash
# The user surface answers: every command has --help (exit 0), an unknown
# command exits 2 with the usage, and a bad cluster file makes the daemons
# and hexadctl exit non-zero naming the bad line. (Project rule: "every
# user-facing command has --help; errors name the cause and the fix".)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

fails=0
check() {  # description expected-rc command...
    local what=$1 want=$2 out rc
    shift 2
    out=$("$@" 2>&1) && rc=0 || rc=$?
    if [ "$rc" -eq "$want" ]; then
        hx_pass "$what (exit $rc)"
    else
        printf 'FAIL: %s: exit %s, expected %s; output:\n%s\n' "$what" "$rc" "$want" "$out" >&2
        fails=$((fails + 1))
    fi
    LAST_OUT=$out
}

# Like check, but also wants a non-zero exit and a message matching a regex.
check_error() {  # description regex command...
    local what=$1 re=$2 out rc
    shift 2
    out=$(timeout -k 5 30 "$@" 2>&1) && rc=0 || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && grep -Eq -e "$re" <<<"$out"; then
        hx_pass "$what (exit $rc: $(head -n 1 <<<"$out"))"
    else
        printf 'FAIL: %s: exit %s, expected non-zero with a message matching /%s/; output:\n%s\n' \
            "$what" "$rc" "$re" "$out" >&2
        fails=$((fails + 1))
    fi
}

cd "$HX_REPO" || hx_fail "cannot cd to the repository $HX_REPO"

# ---- ./hexad
check "./hexad --help" 0 ./hexad --help
for cmd in $(./hexad --help | awk '/^  [a-z]+ / { print $1 }' | sort -u); do
    check "./hexad $cmd --help" 0 ./hexad "$cmd" --help
    grep -q "Usage: ./hexad $cmd" <<<"$LAST_OUT" ||
        { echo "FAIL: ./hexad $cmd --help does not start with its usage" >&2; fails=$((fails + 1)); }
done
check "./hexad with an unknown command" 2 ./hexad no-such-command
grep -q "unknown command 'no-such-command'" <<<"$LAST_OUT" ||
    { echo "FAIL: the unknown-command message does not name the command" >&2; fails=$((fails + 1)); }
check "./hexad without a command" 2 ./hexad
check_error "./hexad status without a cluster" "no cluster file at .*run './hexad up'" \
    ./hexad status --data "$HX_TMP/none"
check_error "./hexad kill without a node" "needs one or more NODE ids or --az AZ" ./hexad kill --data "$HX_TMP/none"

# ---- deploy scripts
check "deploy/install-deps.sh --help" 0 bash deploy/install-deps.sh --help
check "deploy/local/gen-cluster.sh --help" 0 bash deploy/local/gen-cluster.sh --help
check "deploy/vms/hexad-vm.sh --help" 0 bash deploy/vms/hexad-vm.sh --help
check "gen-cluster.sh rejects 2 AZs" 2 bash deploy/local/gen-cluster.sh --data /x --azs 2
bash deploy/local/gen-cluster.sh --data "$HX_TMP/d" --base-port 30000 --out "$HX_TMP/gen.conf"
n=$(grep -c '^storage ' "$HX_TMP/gen.conf")
azs=$(grep -o ' az=az[0-9]*' "$HX_TMP/gen.conf" | sort -u | wc -l)
if [ "$n" -eq 9 ] && [ "$azs" -eq 3 ] && grep -q '^compute id=w1 role=writer' "$HX_TMP/gen.conf"; then
    hx_pass "gen-cluster.sh writes 9 storage nodes in 3 AZs and a writer"
else
    echo "FAIL: gen-cluster.sh wrote $n storage nodes in $azs AZs:" >&2
    cat "$HX_TMP/gen.conf" >&2
    fails=$((fails + 1))
fi

# ---- daemons and hexadctl, when built
bad=$HX_TMP/bad.conf
cat >"$bad" <<EOF
# a cluster file with a mistake on line 3
cluster name=t volume=1 page_size=4096 pg_pages=32
storage id=s1 az=az1 addr=127.0.0.1:notaport data=$HX_TMP/s1
EOF
if [ -n "${HEXAD_STORAGE_BIN:-}" ]; then
    hx_require_bins HEXAD_STORAGE_BIN
    check "hexad-storage --help" 0 "$HEXAD_STORAGE_BIN" --help
    check_error "hexad-storage with a bad cluster file" "line 3" \
        "$HEXAD_STORAGE_BIN" --cluster "$bad" --id s1
    check_error "hexad-storage with a missing cluster file" "$HX_TMP/missing.conf" \
        "$HEXAD_STORAGE_BIN" --cluster "$HX_TMP/missing.conf" --id s1
    check_error "hexad-storage without --id" "--id" "$HEXAD_STORAGE_BIN" --cluster "$bad"
else
    echo "SKIP: HEXAD_STORAGE_BIN not set (storage node not built yet)"
fi
if [ -n "${HEXADCTL_BIN:-}" ]; then
    hx_require_bins HEXADCTL_BIN
    check "hexadctl --help" 0 "$HEXADCTL_BIN" --help
    check_error "hexadctl status with a bad cluster file" "line 3" \
        "$HEXADCTL_BIN" --cluster "$bad" status
    check_error "hexadctl with an unknown command" "no-such-command" \
        "$HEXADCTL_BIN" --cluster "$bad" no-such-command
else
    echo "SKIP: HEXADCTL_BIN not set (hexadctl not built yet)"
fi

if [ -n "${HEXAD_COMPUTE_BIN:-}" ]; then
    hx_require_bins HEXAD_COMPUTE_BIN
    check "hexad-compute --help" 0 "$HEXAD_COMPUTE_BIN" --help
    check_error "hexad-compute with a bad cluster file" "line 3" \
        "$HEXAD_COMPUTE_BIN" --cluster "$bad" --id w1
fi

# ---- ./hexad manages a cluster's processes by pid (start, kill, stop,
# status, down), with the binaries of this build.
if [ -n "${HEXAD_STORAGE_BIN:-}" ] && [ -n "${HEXADCTL_BIN:-}" ]; then
    export HEXAD_BUILD
    HEXAD_BUILD=$(dirname "$(dirname "$HEXAD_STORAGE_BIN")")
    [ -x "$HEXAD_BUILD/compute-node/hexadctl" ] ||
        hx_fail "hexadctl is not next to hexad-storage in $HEXAD_BUILD"
    data=$HX_TMP/hexad-data
    hx_pick_ports 10
    bash deploy/local/gen-cluster.sh --data "$data" --base-port "$HX_BASE_PORT" \
        --pg-port $((HX_BASE_PORT + 200)) --journal-mib 4 --out "$data/cluster.conf"
    mapfile -t node_ids < <(hx_storage_ids_of "$data/cluster.conf")
    for id in "${node_ids[@]}"; do
        check "./hexad start $id" 0 ./hexad start --data "$data" "$id"
        # ./hexad detaches its nodes (setsid); record them for the cleanup.
        [ -f "$data/run/$id.pid" ] && hx_track_pid "$(cat "$data/run/$id.pid")"
    done
    reachable() { ./hexad status --data "$data" --json 2>/dev/null | jq '[.nodes[] | select(.reachable)] | length'; }
    # shellcheck disable=SC2016
    if wait_until '[ "$(reachable)" = 9 ]' 30; then
        hx_pass "./hexad status --json: 9 storage nodes reachable"
    else
        echo "FAIL: ./hexad status --json shows $(reachable) reachable nodes, not 9" >&2
        fails=$((fails + 1))
    fi
    check "./hexad status (table)" 0 ./hexad status --data "$data"
    pid1=$(cat "$data/run/s1.pid")
    check "./hexad kill s1" 0 ./hexad kill --data "$data" s1
    if ! hx_pid_alive "$pid1" && [ ! -f "$data/run/s1.pid" ]; then
        hx_pass "s1 (pid $pid1) is gone and its pid file removed"
    else
        echo "FAIL: after ./hexad kill s1, pid $pid1 still runs or its pid file remains" >&2
        fails=$((fails + 1))
    fi
    # shellcheck disable=SC2016
    if wait_until '[ "$(reachable)" = 8 ]' 30; then
        hx_pass "./hexad status sees s1 down"
    else
        echo "FAIL: ./hexad status --json shows $(reachable) reachable nodes after kill s1, not 8" >&2
        fails=$((fails + 1))
    fi
    check "./hexad start s1 again" 0 ./hexad start --data "$data" s1
    hx_track_pid "$(cat "$data/run/s1.pid")"
    check "./hexad stop s2" 0 ./hexad stop --data "$data" s2
    check_error "./hexad logs of an unknown node" "no log" ./hexad logs --data "$data" nosuch
    check "./hexad logs s1" 0 ./hexad logs --data "$data" s1 -n 5
    pids=$(cat "$data"/run/*.pid)
    check "./hexad down" 0 ./hexad down --data "$data"
    left=0
    for p in $pids; do hx_pid_alive "$p" && left=$((left + 1)); done
    if [ "$left" -eq 0 ] && [ -z "$(ls "$data/run")" ]; then
        hx_pass "./hexad down stopped every node and removed the pid files"
    else
        echo "FAIL: after ./hexad down, $left node(s) still run; run/ holds: $(ls "$data/run")" >&2
        fails=$((fails + 1))
    fi
fi

if [ "$fails" -gt 0 ]; then
    hx_fail "$fails check(s) failed (see the FAIL lines above)"
fi
hx_pass "test_cli: all checks"
