#!/usr/bin/env bash
# swarm-e2e.sh: end-to-end test of docker/stack.yml on a real single-node Docker Swarm
# (`make swarm-e2e`; run by docker/ci-docker.sh after the compose e2e).
#
# Swarm mode is initialised only if it is inactive, and left at the end only if this script
# initialised it. The stack (E2E_STACK, default "distswarm-e2e") is published on free ports and
# removed at the end whatever happens (trap on EXIT), with the remote caller's container. Steps, in
# order; the first failing step stops the run and is named:
#
#   1 swarm          swarm mode active (initialised here if it was not)
#   2 deploy         `docker stack deploy` (local image, `--resolve-image never`); master answers
#   3 wait-3         the master lists 3 nodes (they found `master` by Swarm's DNS)
#   4 sum-parallel   50 parallel /sum through the gateway, every answer exact, >= 2 nodes
#   5 palindrom      /palindrom?n=10000000 counts 6536
#   6 scale-6        `docker service scale node=6` under load: 6 listed, no failed request
#   7 scale-2        scale to 2 under load (SIGTERM, drain): 2 listed, no failed request
#   8 kill-node      `docker kill` a node under load: evicted within TTL + 2 s, Swarm's replacement
#                    listed, no failed request
#   9 kill-master    a remote caller (`distribution-demo client sum`, a container on the overlay
#                    network) calls the nodes while the master container is SIGKILLed: Swarm
#                    starts a new master at a new address, every node is listed again within
#                    E2E_RELIST_BOUND_S (3) of the new master answering (they resolved `master`
#                    again), and the caller's job ends with no failed call
#
# Knobs (environment): E2E_STACK, DIST_IMAGE, E2E_TTL_MS (3000), E2E_HEARTBEAT_MS (1000),
# E2E_SUM_DELAY_MS (50), E2E_RUST_LOG (info), E2E_LOAD_MAX_REQUESTS (4000),
# E2E_LOAD_MAX_SECONDS (90), E2E_CALLER_CALLS (1500), E2E_RELIST_BOUND_S (3),
# E2E_SCALE_BOUND_S (60: a scale command, then the list), E2E_MASTER_BACK_BOUND_S (60).
#
# Needs: docker (an engine that can run swarm mode), python3, and the image (DIST_IMAGE, default
# distribution-demo:latest; `make docker` builds it). HTTP goes only to 127.0.0.1 ports published
# by this stack; every request loop is bounded in count and in time.
set -uo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STACK_FILE="$HERE/stack.yml"
HELPER="$HERE/e2e_helper.py"
STACK=${E2E_STACK:-distswarm-e2e}
export DIST_IMAGE=${DIST_IMAGE:-distribution-demo:latest}
export DIST_TTL_MS=${E2E_TTL_MS:-3000}
export DIST_HEARTBEAT_MS=${E2E_HEARTBEAT_MS:-1000}
export DIST_SUM_DELAY_MS=${E2E_SUM_DELAY_MS:-50}
export RUST_LOG=${E2E_RUST_LOG:-info}
export DIST_NODES=3
EVICT_BOUND_S=$(( (DIST_TTL_MS + 2000) / 1000 ))
SCALE_BOUND_S=${E2E_SCALE_BOUND_S:-60}
RELIST_BOUND_S=${E2E_RELIST_BOUND_S:-3}
CALLER="$STACK-caller"
STEP_NAMES=(swarm deploy wait-3 sum-parallel palindrom scale-6 scale-2 kill-node kill-master)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/distswarm-e2e.XXXXXX")
DEPLOYED=0
INITIALISED=0
GWBRIDGE_BEFORE=1
T_ALL=$EPOCHREALTIME

E2E_LOAD_SECONDS=90
# shellcheck source=e2e_lib.sh
source "$HERE/e2e_lib.sh"
indent() { sed 's/^/    | /'; }

# Containers of this stack's service (Swarm labels them), running ones unless told otherwise.
containers() { # service [extra docker ps args...]
    local service=$1
    shift
    docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_$service" "$@"
}
running_nodes() { containers node --filter status=running; }
container_ip() { # container -> its address on the stack's overlay network
    docker inspect -f "{{with index .NetworkSettings.Networks \"${STACK}_cluster\"}}{{.IPAddress}}{{end}}" "$1"
}

scale() { # n: scale the node service and wait (bounded) until Swarm says it converged
    local t0 rc=0
    t0=$(now)
    timeout "$SCALE_BOUND_S" docker service scale "${STACK}_node=$1" 2>&1 | tail -n 1 | indent
    rc=${PIPESTATUS[0]}
    log "    docker service scale ${STACK}_node=$1: exit $rc after $(since "$t0")s"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
step_swarm() {
    local state
    state=$(docker info --format '{{.Swarm.LocalNodeState}}') || return 1
    if [[ "$state" == active ]]; then
        log "    swarm mode already active: used as is, left on at the end"
        return 0
    fi
    if [[ "$state" != inactive ]]; then
        log "    swarm state '$state': neither active nor inactive, not touched"
        return 1
    fi
    # Swarm mode creates the bridge `docker_gwbridge`, which outlives `swarm leave`.
    docker network inspect docker_gwbridge >/dev/null 2>&1 || GWBRIDGE_BEFORE=0
    # Without --advertise-addr the engine picks its address; with several interfaces it asks for
    # one, and a single-node swarm is content with the loopback.
    if docker swarm init >"$WORK/init.log" 2>&1 ||
        docker swarm init --advertise-addr 127.0.0.1 >"$WORK/init.log" 2>&1; then
        INITIALISED=1
        log "    swarm mode initialised here (it will be left at the end)"
        return 0
    fi
    indent <"$WORK/init.log"
    return 1
}

step_deploy() {
    local t0
    t0=$(now)
    DEPLOYED=1
    docker stack deploy --resolve-image never -c "$STACK_FILE" "$STACK" 2>&1 | indent
    [[ ${PIPESTATUS[0]} == 0 ]] || return 1
    log "    deployed in $(since "$t0")s; waiting for the master's published port"
    py wait-health "$REGISTRY" 60 || return 1
    log "    master answers $(since "$t0")s after the deploy"
}

step_wait_3() {
    py wait-count "$REGISTRY" 3 60 "$(now)"
}

step_sum_parallel() {
    py sum-parallel "$GATEWAY" 50
}

step_palindrom() {
    py palindrom "$GATEWAY" 10000000 6536
}

step_scale_6() {
    local t0 rc=0
    load_start scale-6
    t0=$(now)
    scale 6 || rc=1
    py wait-count "$REGISTRY" 6 "$EVICT_BOUND_S" "$(now)" || rc=1
    log "    6 nodes listed $(since "$t0")s after the scale command"
    sleep 1
    load_stop scale-6 || rc=1
    return "$rc"
}

step_scale_2() {
    local t0 rc=0
    load_start scale-2
    t0=$(now)
    scale 2 || rc=1
    # The stopped nodes left the master before they exited: the list is 2 when scale returns.
    py wait-count "$REGISTRY" 2 "$EVICT_BOUND_S" "$(now)" || rc=1
    log "    2 nodes listed $(since "$t0")s after the scale command"
    sleep 1
    load_stop scale-2 || rc=1
    return "$rc"
}

step_kill_node() {
    local t0 victim ip rc=0
    victim=$(running_nodes | head -n 1)
    [[ -n "$victim" ]] || { log "    no running node container"; return 1; }
    ip=$(container_ip "$victim")
    [[ -n "$ip" ]] || { log "    no address for node container $victim"; return 1; }
    load_start kill-node
    t0=$(now)
    docker kill --signal KILL "$victim" >/dev/null || rc=1
    log "    SIGKILLed node container ${victim:0:12} ($ip)"
    py wait-gone "$REGISTRY" "$ip" "$EVICT_BOUND_S" "$t0" || rc=1
    # Swarm starts a replacement task (restart delay 1 s); it registers at its own address.
    py wait-count "$REGISTRY" 2 "$SCALE_BOUND_S" "$t0" || rc=1
    log "    replacement listed $(since "$t0")s after the kill"
    sleep 1
    load_stop kill-node || rc=1
    return "$rc"
}

step_kill_master() {
    local t0 t_back master old_ip n calls served rc=0 caller_rc
    n=$(running_nodes | wc -l)
    master=$(containers master --filter status=running | head -n 1)
    [[ -n "$master" ]] || { log "    no running master container"; return 1; }
    calls=${E2E_CALLER_CALLS:-1500}
    # The remote caller: a container on the stack's network, resolving `master` by Swarm's DNS,
    # calling the nodes directly. Its job fails if a single call fails.
    docker rm -f "$CALLER" >/dev/null 2>&1
    served=$(py served "$REGISTRY") || return 1
    docker run -d --name "$CALLER" --network "${STACK}_cluster" --label "distswarm-e2e=$STACK" \
        "$DIST_IMAGE" client --master master:3000 sum --values 2,4,6 --repeat "$calls" \
        --concurrency 4 >/dev/null || return 1
    log "    remote caller started: $calls calls of sum [2, 4, 6], 4 at once"
    # Kill the master only once the caller is calling (the nodes' heartbeats report it).
    py wait-served "$REGISTRY" "$served" 20 30 || rc=1
    if [[ "$(docker inspect -f '{{.State.Running}}' "$CALLER")" != true ]]; then
        log "    the remote caller ended before the master was killed:"
        docker logs "$CALLER" 2>&1 | tail -n 20 | indent
        return 1
    fi
    t0=$(now)
    old_ip=$(container_ip "$master")
    docker kill --signal KILL "$master" >/dev/null || return 1
    log "    SIGKILLed master container ${master:0:12} ($old_ip); expecting $n node(s) listed again"
    py wait-health "$REGISTRY" "${E2E_MASTER_BACK_BOUND_S:-60}" || rc=1
    t_back=$(now)
    master=$(containers master --filter status=running | head -n 1)
    log "    a new master (${master:0:12}, $(container_ip "$master")) answers $(since "$t0")s after the kill"
    py wait-count "$REGISTRY" "$n" "$RELIST_BOUND_S" "$t_back" || rc=1
    if [[ "$(docker inspect -f '{{.State.Running}}' "$CALLER")" == true ]]; then
        log "    the remote caller was still calling at that point"
    else
        log "    note: the remote caller had ended by then (raise E2E_CALLER_CALLS)"
    fi
    caller_rc=$(timeout 120 docker wait "$CALLER") || caller_rc=timeout
    log "    remote caller: exit $caller_rc; its summary:"
    docker logs "$CALLER" 2>&1 | tail -n 12 | indent
    [[ "$caller_rc" == 0 ]] || rc=1
    docker rm -f "$CALLER" >/dev/null 2>&1
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
teardown() {
    local t0 left
    t0=$(now)
    docker rm -f "$CALLER" >/dev/null 2>&1
    if [[ "$DEPLOYED" == 1 ]]; then
        docker stack rm "$STACK" 2>&1 | indent
        # `stack rm` returns at once; its containers (drain: up to stop_grace_period) and its
        # network go away afterwards. Wait for them, bounded.
        for _ in $(seq 1 120); do
            left=$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK" | wc -l)
            if [[ "$left" == 0 ]] && ! docker network inspect "${STACK}_cluster" >/dev/null 2>&1; then
                break
            fi
            sleep 0.5
        done
        left=$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK" | wc -l)
        log "    stack removed in $(since "$t0")s ($left container(s) left)"
    fi
    if [[ "$INITIALISED" == 1 ]]; then
        docker swarm leave --force 2>&1 | indent
        if [[ "$GWBRIDGE_BEFORE" == 0 ]]; then
            docker network rm docker_gwbridge >/dev/null 2>&1
        fi
        log "    left swarm mode (this script had initialised it)"
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ "$STARTED" != 1 ]]; then
        rm -rf "$WORK"
        exit "$rc"
    fi
    end_steps
    if [[ -n "$FAILED_STEP" && "$DEPLOYED" == 1 ]]; then
        log "--- state when step '$FAILED_STEP' failed"
        docker stack ps --no-trunc "$STACK" 2>&1 | head -n 30 | indent
        for service in master node; do
            docker service logs --no-task-ids --tail 20 "${STACK}_$service" 2>&1 | indent
        done
    fi
    log "=== teardown"
    teardown
    rm -rf "$WORK"
    log "swarm-e2e: total $(since "$T_ALL")s"
    verdict swarm-e2e "$rc"
}
trap cleanup EXIT
trap 'log "swarm-e2e: interrupted"; exit 130' INT TERM


# ---------------------------------------------------------------------------------------------
docker image inspect "$DIST_IMAGE" >/dev/null 2>&1 || {
    log "swarm-e2e: image $DIST_IMAGE not found; run 'make docker' first" >&2
    exit 1
}
if [[ "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" == active ]] &&
    docker stack ls --format '{{.Name}}' 2>/dev/null | grep -qx "$STACK"; then
    log "swarm-e2e: a stack named $STACK exists already (an interrupted run?); remove it first:" \
        "docker stack rm $STACK" >&2
    exit 1
fi
# The master's ports are published on the host (every interface); only 127.0.0.1 is used here.
read -r REGISTRY_PORT GATEWAY_PORT < <(py free-ports 2)
export DIST_REGISTRY_PORT=$REGISTRY_PORT DIST_GATEWAY_PORT=$GATEWAY_PORT
REGISTRY="http://127.0.0.1:$REGISTRY_PORT"
GATEWAY="http://127.0.0.1:$GATEWAY_PORT"
log "swarm-e2e: stack $STACK, image $DIST_IMAGE, registry $REGISTRY, gateway $GATEWAY," \
    "TTL ${DIST_TTL_MS}ms, heartbeat ${DIST_HEARTBEAT_MS}ms"

STARTED=1
for i in "${!STEP_NAMES[@]}"; do
    run_step "$i" || break
done
