# e2e_lib.sh: what the compose (e2e.sh) and Swarm (swarm-e2e.sh) end-to-end tests share, sourced
# by both after they set HELPER, WORK, GATEWAY and STEP_NAMES: the step counters and runner, the
# clock, the Python helper, and the bounded background request loop with its report.
# E2E_LOAD_SECONDS (set by the sourcing script) is the loop's default time bound.

PASSED=0
FAILED=0
FAILED_STEP=""
CURRENT_STEP=""
LOAD_PID=""
STARTED=0

log() { printf '%s\n' "$*"; }
now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
py() { python3 "$HELPER" "$@"; }

# Bounded background request loop through the gateway (at most E2E_LOAD_MAX_REQUESTS requests
# and E2E_LOAD_MAX_SECONDS seconds), and its report.
load_start() { # tag
    rm -f "$WORK/stop"
    py load "$GATEWAY" "$WORK/stop" "${E2E_LOAD_MAX_REQUESTS:-4000}" \
        "${E2E_LOAD_MAX_SECONDS:-$E2E_LOAD_SECONDS}" 4 >"$WORK/load-$1.json" &
    LOAD_PID=$!
    sleep 1
}
load_stop() { # tag [strict|info]
    touch "$WORK/stop"
    wait "$LOAD_PID"
    LOAD_PID=""
    py load-report "$WORK/load-$1.json" "${2:-strict}"
}

# Runs step number $1 of STEP_NAMES (the function step_<name>, dashes as underscores) and counts
# it; returns non-zero when it failed.
run_step() { # index
    local name=${STEP_NAMES[$1]} fn t0
    fn="step_${name//-/_}"
    CURRENT_STEP=$name
    log "=== step $(($1 + 1))/${#STEP_NAMES[@]}: $name"
    t0=$(now)
    if "$fn"; then
        PASSED=$((PASSED + 1))
        CURRENT_STEP=""
        log "--- PASS $name ($(since "$t0")s)"
        return 0
    fi
    FAILED=$((FAILED + 1))
    FAILED_STEP=$name
    CURRENT_STEP=""
    log "--- FAIL $name ($(since "$t0")s)"
    return 1
}

# The start of a cleanup: stops the request loop, and counts a step cut short as failed.
end_steps() {
    if [[ -n "$LOAD_PID" ]]; then
        touch "$WORK/stop"
        kill "$LOAD_PID" 2>/dev/null
        wait "$LOAD_PID" 2>/dev/null
    fi
    if [[ -n "$CURRENT_STEP" && -z "$FAILED_STEP" ]]; then
        FAILED_STEP=$CURRENT_STEP # interrupted in the middle of a step
        FAILED=$((FAILED + 1))
    fi
}

# The end of a cleanup: "<name>: N passed, M failed" (and what was skipped, and where it failed);
# exits 0 only when every step passed and the script's status was 0.
verdict() { # name rc
    local skipped=$(( ${#STEP_NAMES[@]} - PASSED - FAILED ))
    if [[ -n "$FAILED_STEP" ]]; then
        log "$1: FAILED at step '$FAILED_STEP'"
        log "$1: $PASSED passed, $FAILED failed, $skipped skipped"
        exit 1
    fi
    log "$1: $PASSED passed, $FAILED failed"
    [[ "$2" == 0 && "$PASSED" == "${#STEP_NAMES[@]}" ]] || exit 1
    exit 0
}
