# shellcheck shell=bash
# e2e_masters.sh: the docker e2e step `kill-master-of-two` (issue #13, no single master), sourced
# by e2e.sh, whose helpers it uses (compose, py, load_start/load_stop, master_id, now, since).
#
# It adds a second master with docker-compose.masters.yml (master2, on free loopback ports) and
# recreates the 3 nodes with both masters (`--master=master:3000,master2:3000`); both masters
# must list the 3. Requests then run through master 2's gateway while master 1 is SIGKILLed
# (`docker kill`): none may fail, master 2 keeps listing the 3 nodes; master 1 started again
# (`docker start`, same container and ports) must list every node within an interval + 2 s.

compose_two() { # compose with both files: the base and the second master
    "${COMPOSE_CMD[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" -f "$HERE/docker-compose.masters.yml" "$@" 2>&1 |
        sed 's/^/    | /'
}

step_kill_master_of_two() {
    local t0 r2 g2 registry2 master1 bound rc=0
    read -r r2 g2 < <(py free-ports 2)
    export DIST_REGISTRY2_BIND="127.0.0.1:$r2" DIST_GATEWAY2_BIND="127.0.0.1:$g2"
    registry2="http://127.0.0.1:$r2"
    # load_start sends its requests to $GATEWAY: here master 2's gateway.
    local GATEWAY="http://127.0.0.1:$g2"
    t0=$(now)
    compose_two up -d --scale node=3 || return 1
    py wait-health "$registry2" 20 || return 1
    py wait-count "$REGISTRY" 3 30 "$t0" || return 1
    py wait-count "$registry2" 3 30 "$t0" || return 1
    master1=$(master_id)
    load_start kill-master
    docker kill --signal KILL "$master1" >/dev/null || rc=1
    log "    SIGKILLed master 1 (${master1:0:12}); requests go through master 2's gateway"
    sleep 3
    py wait-count "$registry2" 3 1 "$(now)" || rc=1
    docker start "$master1" >/dev/null || rc=1
    t0=$(now)
    bound=$(awk -v ms="$DIST_HEARTBEAT_MS" 'BEGIN { printf "%.1f", ms / 1000 + 2 }')
    log "    master 1 started again; expecting the 3 nodes within ${bound}s"
    py wait-count "$REGISTRY" 3 "$bound" "$t0" || rc=1
    load_stop kill-master strict || rc=1
    return "$rc"
}
