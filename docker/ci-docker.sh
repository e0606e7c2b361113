#!/usr/bin/env bash
# ci-docker.sh: the Docker part of `.ci/run`. Runs `make docker-e2e` (static binary, image, then
# docker/e2e.sh) when a Docker engine answers; where none does, says so and succeeds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v docker >/dev/null 2>&1; then
    echo "docker-e2e SKIPPED: no Docker engine (the docker client is not installed)"
    exit 0
fi
if ! timeout 30 docker info >/dev/null 2>&1; then
    echo "docker-e2e SKIPPED: no Docker engine ('docker info' did not answer)"
    exit 0
fi

echo "docker-e2e: a Docker engine answers; running make docker-e2e"
if [[ -f Makefile ]]; then
    exec make docker-e2e
fi
exec make -f docker/docker.mk docker-e2e
