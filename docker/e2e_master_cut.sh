# e2e_master_cut.sh: the `master-cut` step of docker/e2e.sh (sourced by it; uses its helpers).
#
# Self-preservation (issue #13): with 3 nodes, the master container is disconnected from the compose network
# for 3 TTLs + 2 s, so that it hears no heartbeat while every node runs, then reconnected (with
# its `master` alias, which the nodes resolve). It must evict nobody: the eviction counter of its
# /metrics is unchanged, and its log has no "node evicted" but says once that it stopped
# evicting (self-preservation) and once that it ended. After the reconnection every node is
# listed and up within an interval + 2 s, and /health says "ok" again within E2E_REJOIN_BOUND_S.
# Without self-preservation every node would be evicted one TTL into the cut. During the cut
# the published ports do not answer (the container has no network but its loopback).

master_cut_evictions() { # registry -> the master's eviction counter (0 before the first)
    python3 - "$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=5) as resp:
    text = resp.read().decode()
values = [line.split()[-1] for line in text.splitlines()
          if line.startswith("distribution_master_evictions_total")]
print(int(float(values[0])) if values else 0)
EOF
}

master_cut_wait_ok() { # registry timeout since: /health says "ok" (bounded)
    python3 - "$@" <<'EOF'
import json, sys, time, urllib.request
reg, timeout, since = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
last = None
while time.time() < since + timeout:
    try:
        with urllib.request.urlopen(reg + "/health", timeout=2) as resp:
            last = json.loads(resp.read())
        if last.get("status") == "ok":
            print(f"    /health ok {time.time() - since:.1f}s after the reconnection")
            sys.exit(0)
    except Exception as e:
        last = e
    time.sleep(0.1)
print(f"    /health not ok within {timeout:g}s; last answer: {last}")
sys.exit(1)
EOF
}

step_master_cut() {
    local master n before after since_s cut_s t0 logs evicted rc=0
    master=$(master_id)
    n=3
    t0=$(now)
    compose up -d --no-recreate --scale node="$n" || return 1
    py wait-count "$REGISTRY" "$n" 10 "$t0" || return 1
    before=$(master_cut_evictions "$REGISTRY") || return 1
    cut_s=$(( (3 * DIST_TTL_MS + 2000 + 999) / 1000 ))
    since_s=$(date +%s)
    docker network disconnect "$NETWORK_NAME" "$master" || return 1
    log "    disconnected the master from $NETWORK_NAME for ${cut_s}s (3 TTLs + 2 s), $n nodes"
    sleep "$cut_s"
    t0=$(now)
    docker network connect --alias master "$NETWORK_NAME" "$master" || return 1
    log "    reconnected the master, now at $(container_ip "$master")"
    py wait-count "$REGISTRY" "$n" $(( (DIST_HEARTBEAT_MS + 2000) / 1000 )) "$t0" || rc=1
    master_cut_wait_ok "$REGISTRY" "${E2E_REJOIN_BOUND_S:-15}" "$t0" || rc=1
    after=$(master_cut_evictions "$REGISTRY") || rc=1
    log "    evictions counter: $before before the cut, $after after"
    [[ "$before" == "$after" ]] || rc=1
    logs=$(docker logs --since "$since_s" "$master" 2>&1)
    evicted=$(grep -c "node evicted" <<<"$logs")
    log "    master log since the cut: $evicted eviction(s);" \
        "$(grep -c "self-preservation:" <<<"$logs") 'stopped evicting'," \
        "$(grep -c "self-preservation ended" <<<"$logs") 'ended'"
    [[ "$evicted" == 0 ]] || rc=1
    grep -q "self-preservation:" <<<"$logs" || { log "    it never said it stopped evicting"; rc=1; }
    grep -q "self-preservation ended" <<<"$logs" || { log "    it never said it resumed"; rc=1; }
    return "$rc"
}
