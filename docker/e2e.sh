#!/usr/bin/env bash
# e2e.sh: end-to-end test of the docker-compose demo on the real Docker engine (`make docker-e2e`).
#
# Runs its own compose project (E2E_PROJECT, default "distdemo-e2e") on its own network (Docker
# picks the subnet; nodes find `master` by Docker's DNS) and on free loopback ports, so it never
# collides with a running `make demo-up`. Steps, in order; the first
# failing step stops the run, its name is printed, and everything is torn down (trap on EXIT):
#
#   1 up              master + 3 nodes started
#   2 wait-3          the master lists 3 nodes (bounded wait)
#   3 healthy         every container's HEALTHCHECK (`distribution-demo health`) reports healthy
#                     within 20 s
#   4 sum-parallel    50 parallel /sum requests, every answer checked, >= 2 distinct nodes served
#   5 palindrom       /palindrom?n=10000000 counts 6536
#   6 scale-5         scale to 5: all 5 listed within 10 s
#   7 scale-1         scale to 1 while requests run: no request fails
#   8 kill-node       back to 3, `docker kill` (SIGKILL) one while requests run: evicted within
#                     TTL + 2 s, no request fails
#   9 restart-master  `docker restart` the master: all running nodes listed again within 5 s
#  10 partition       `docker network disconnect` a node: evicted within TTL + 2 s;
#                     `docker network connect`: listed again within 15 s. Requests run meanwhile;
#                     their failures are printed, and fail the step only with E2E_PARTITION_STRICT=1
#  11 master-cut      `docker network disconnect` the master for 3 TTLs + 2 s: no eviction
#                     (self-preservation); reconnected, every node listed within an interval + 2 s
#                     (docker/e2e_master_cut.sh)
#  13 kill-master-of-two  a second master (docker-compose.masters.yml), nodes with both: SIGKILL
#                     master 1 under load through master 2's gateway: no request fails; master 1
#                     restarted lists every node within an interval + 2 s (docker/e2e_masters.sh)
#
# Knobs (environment): E2E_PROJECT, DIST_IMAGE, E2E_TTL_MS (3000), E2E_HEARTBEAT_MS (1000),
# E2E_SUM_DELAY_MS (50), E2E_RUST_LOG (info), E2E_LOAD_MAX_REQUESTS (4000), E2E_LOAD_MAX_SECONDS (60),
# E2E_REJOIN_BOUND_S (15), E2E_PARTITION_STRICT (0), COMPOSE (e.g. "docker compose").
#
# Needs: docker, docker-compose v1 or `docker compose` v2, python3 (HTTP and parallelism), and the
# image (DIST_IMAGE, default distribution-demo:latest; `make docker` builds it).
# HTTP goes only to the 127.0.0.1 ports published by this project's master. Every request loop is
# bounded in count and in time.
set -uo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMPOSE_FILE="$HERE/docker-compose.yml"
PROJECT=${E2E_PROJECT:-distdemo-e2e}
export DIST_IMAGE=${DIST_IMAGE:-distribution-demo:latest}
export DIST_TTL_MS=${E2E_TTL_MS:-3000}
export DIST_HEARTBEAT_MS=${E2E_HEARTBEAT_MS:-1000}
# A little work per /sum call, so that calls are in flight when nodes are stopped.
export DIST_SUM_DELAY_MS=${E2E_SUM_DELAY_MS:-50}
export RUST_LOG=${E2E_RUST_LOG:-info}
EVICT_BOUND_S=$(( (DIST_TTL_MS + 2000) / 1000 ))
STEP_NAMES=(up wait-3 healthy sum-parallel palindrom two-services scale-5 scale-1 kill-node
    restart-master partition master-cut kill-master-of-two)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/distdemo-e2e.XXXXXX")
HELPER="$HERE/e2e_helper.py"
E2E_LOAD_SECONDS=60
# shellcheck source=e2e_lib.sh
source "$HERE/e2e_lib.sh"

# ---------------------------------------------------------------------------------------------
# Compose: `docker compose` (v2) if present, else `docker-compose` (v1); COMPOSE overrides.
if [[ -n "${COMPOSE:-}" ]]; then
    read -r -a COMPOSE_CMD <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
    COMPOSE_CMD=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE_CMD=(docker-compose)
else
    log "docker-e2e: neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 1
fi

compose() {
    "${COMPOSE_CMD[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" "$@" 2>&1 | sed 's/^/    | /'
}

# Containers of this project only (compose labels, same in v1 and v2).
containers() { # service [extra docker ps args...]
    local service=$1
    shift
    docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$service" "$@"
}
running_nodes() { containers node --filter status=running; }
master_id() { containers master -a | head -n 1; }
project_network() {
    docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" | head -n 1
}
container_ip() { # container -> its address on the project network
    docker inspect -f "{{with index .NetworkSettings.Networks \"$NETWORK_NAME\"}}{{.IPAddress}}{{end}}" "$1"
}

# ---------------------------------------------------------------------------------------------
# HTTP side, in Python (docker/e2e_helper.py): registry polling, parallel /sum, bounded loops.

# ---------------------------------------------------------------------------------------------
# Steps. Each returns non-zero on failure; its output says why.
step_up() {
    compose up -d --scale node=3 || return 1
    NETWORK_NAME=$(docker network inspect -f '{{.Name}}' "$(project_network)") || return 1
    py wait-health "$REGISTRY" 20
}

step_wait_3() {
    py wait-count "$REGISTRY" 3 30 "$(now)"
}

step_healthy() { # every container of the project reports healthy (Docker's HEALTHCHECK)
    local t0 deadline ids status bad
    t0=$(now)
    deadline=$(( $(date +%s) + 20 ))
    while :; do
        ids=$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT")
        bad=""
        for id in $ids; do
            status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
            [[ "$status" == healthy ]] || bad="$bad $id:$status"
        done
        if [[ -n "$ids" && -z "$bad" ]]; then
            log "    $(echo "$ids" | wc -w) container(s) healthy after $(since "$t0")s"
            return 0
        fi
        if (( $(date +%s) >= deadline )); then
            log "    not healthy within 20 s:$bad"
            return 1
        fi
        sleep 0.5
    done
}

step_sum_parallel() {
    py sum-parallel "$GATEWAY" 50
}

step_palindrom() {
    py palindrom "$GATEWAY" 10000000 6536
}

step_two_services() { # the `text` container next to the `calc` nodes: each routed to its own
    py two-services "$REGISTRY" "$GATEWAY" 30
}

step_scale_5() {
    local t0
    t0=$(now)
    compose up -d --no-recreate --scale node=5 || return 1
    py wait-count "$REGISTRY" 5 10 "$t0"
}

step_scale_1() {
    local t0 rc=0
    load_start scale-1
    t0=$(now)
    compose up -d --no-recreate --scale node=1 || rc=1
    log "    compose scaled down to 1 in $(since "$t0")s"
    # Stopped nodes deregister before they exit, so the list should already be down to 1; the
    # bound counts from compose's return, as compose itself can be slow on a loaded machine.
    py wait-count "$REGISTRY" 1 "$EVICT_BOUND_S" "$(now)" || rc=1
    sleep 1
    load_stop scale-1 strict || rc=1
    return "$rc"
}

step_kill_node() {
    local t0 victim ip rc=0
    t0=$(now)
    compose up -d --no-recreate --scale node=3 || return 1
    py wait-count "$REGISTRY" 3 10 "$t0" || return 1
    victim=$(running_nodes | head -n 1)
    ip=$(container_ip "$victim")
    [[ -n "$ip" ]] || { log "    no address for node container $victim"; return 1; }
    load_start kill
    t0=$(now)
    docker kill --signal KILL "$victim" >/dev/null || rc=1
    log "    SIGKILLed node container ${victim:0:12} ($ip)"
    py wait-gone "$REGISTRY" "$ip" "$EVICT_BOUND_S" "$t0" || rc=1
    sleep 1
    load_stop kill strict || rc=1
    return "$rc"
}

step_restart_master() {
    local t0 n
    n=$(running_nodes | wc -l)
    t0=$(now)
    docker restart -t 10 "$(master_id)" >/dev/null || return 1
    log "    docker restart returned after $(since "$t0")s; expecting the $n running node(s)"
    py wait-count "$REGISTRY" "$n" 5 "$(now)"
}

step_partition() {
    local victim ip new_ip n t0 rc=0
    n=$(running_nodes | wc -l)
    victim=$(running_nodes | head -n 1)
    ip=$(container_ip "$victim")
    [[ -n "$ip" ]] || { log "    no address for node container $victim"; return 1; }
    # Requests keep running. Their failures are reported but only judged with
    # E2E_PARTITION_STRICT=1: the issue asks for eviction and rejoin here, not for zero failures.
    load_start partition
    t0=$(now)
    docker network disconnect "$NETWORK_NAME" "$victim" || rc=1
    log "    disconnected node container ${victim:0:12} ($ip) from $NETWORK_NAME"
    py wait-gone "$REGISTRY" "$ip" "$EVICT_BOUND_S" "$t0" || rc=1
    t0=$(now)
    docker network connect "$NETWORK_NAME" "$victim" || rc=1
    new_ip=$(container_ip "$victim")
    log "    reconnected it, now at ${new_ip:-?}"
    py wait-present "$REGISTRY" "$new_ip" "${E2E_REJOIN_BOUND_S:-15}" "$t0" || rc=1
    py wait-count "$REGISTRY" "$n" "${E2E_REJOIN_BOUND_S:-15}" "$t0" || rc=1
    if [[ "${E2E_PARTITION_STRICT:-0}" == 1 ]]; then
        load_stop partition strict || rc=1
    else
        load_stop partition info
    fi
    return "$rc"
}

# shellcheck source=docker/e2e_master_cut.sh
source "$HERE/e2e_master_cut.sh"
# shellcheck source=docker/e2e_masters.sh
source "$HERE/e2e_masters.sh"

# ---------------------------------------------------------------------------------------------
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ "$STARTED" != 1 ]]; then # a pre-check failed: nothing was started
        rm -rf "$WORK"
        exit "$rc"
    fi
    end_steps
    if [[ -n "$FAILED_STEP" ]]; then
        log "--- state when step '$FAILED_STEP' failed"
        compose ps
        compose logs --no-color --tail=30
    fi
    log "=== teardown"
    compose down -v --remove-orphans -t 20
    rm -rf "$WORK"
    verdict docker-e2e "$rc"
}
trap cleanup EXIT
trap 'log "docker-e2e: interrupted"; exit 130' INT TERM


# ---------------------------------------------------------------------------------------------
docker image inspect "$DIST_IMAGE" >/dev/null 2>&1 || {
    log "docker-e2e: image $DIST_IMAGE not found; run 'make docker' first" >&2
    exit 1
}
# Leftovers of an interrupted earlier run of this same project.
compose down -v --remove-orphans -t 5 >/dev/null 2>&1

read -r REGISTRY_PORT GATEWAY_PORT < <(py free-ports 2)
export DIST_REGISTRY_BIND="127.0.0.1:$REGISTRY_PORT" DIST_GATEWAY_BIND="127.0.0.1:$GATEWAY_PORT"
REGISTRY="http://127.0.0.1:$REGISTRY_PORT"
GATEWAY="http://127.0.0.1:$GATEWAY_PORT"
NETWORK_NAME=""
log "docker-e2e: project $PROJECT, image $DIST_IMAGE, compose '${COMPOSE_CMD[*]}'," \
    "registry $REGISTRY, gateway $GATEWAY, TTL ${DIST_TTL_MS}ms"

STARTED=1
for i in "${!STEP_NAMES[@]}"; do
    run_step "$i" || break
done
