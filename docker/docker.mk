# docker.mk: the Docker demo and its end-to-end test. Included by the root Makefile
# (`-include docker/docker.mk`); also usable alone: `make -f docker/docker.mk docker`.
#
#   make docker            static binary (target/static) + image distribution-demo:latest
#   make demo-up [N=3]     master + N nodes, compose project "distdemo", 127.0.0.1:3000/3001
#   make demo-up MASTERS=2 two masters (docker-compose.masters.yml: master2 on 127.0.0.1:3003/3004),
#                          every node registered with both; give MASTERS=2 to demo-scale too
#   make demo-sum          a few /sum calls in parallel, then /palindrom?n=2000
#   make demo-scale N=5    scale the node service to N
#   make demo-down         stop and remove the demo
#   make docker-e2e        image, then docker/e2e.sh on the real engine (own project name)
#   make swarm-up [N=3]    the stack docker/stack.yml on Docker Swarm (swarm mode initialised
#                          if inactive), stack "distswarm", published on port 3000/3001
#   make swarm-scale N=6   scale the node service to N (waits until the tasks run)
#   make swarm-down        remove the stack (swarm mode stays on: `docker swarm leave --force`)
#   make swarm-e2e         image, then docker/swarm-e2e.sh on a real single-node swarm

DOCKER_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
DOCKER_ROOT := $(abspath $(DOCKER_DIR)/..)

CARGO ?= cargo
DOCKER ?= docker
DOCKER_IMAGE ?= distribution-demo:latest
DOCKER_TRIPLE ?= x86_64-unknown-linux-gnu
# A target dir of its own: the static build never invalidates the normal `target/` builds.
DOCKER_TARGET_DIR ?= $(DOCKER_ROOT)/target/static
DOCKER_BIN := $(DOCKER_TARGET_DIR)/$(DOCKER_TRIPLE)/release/distribution-demo
DOCKER_CONTEXT := $(DOCKER_TARGET_DIR)/docker-context

# `docker compose` (v2 plugin) if present, else `docker-compose` (v1). Expanded only when used.
COMPOSE ?= $(shell if $(DOCKER) compose version >/dev/null 2>&1; then echo "$(DOCKER) compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)
DEMO_PROJECT ?= distdemo
# MASTERS=2 adds the second master's override file; any other value: one master.
DEMO_FILES = -f $(DOCKER_DIR)/docker-compose.yml \
	$(if $(filter 2,$(MASTERS)),-f $(DOCKER_DIR)/docker-compose.masters.yml)
DEMO_COMPOSE = $(COMPOSE) -p $(DEMO_PROJECT) $(DEMO_FILES)
DEMO_GATEWAY ?= http://127.0.0.1:3001
DEMO_REGISTRY ?= http://127.0.0.1:3000
SWARM_STACK ?= distswarm

.PHONY: docker docker-bin demo-up demo-sum demo-scale demo-down docker-e2e docker-check-compose \
	swarm-up swarm-scale swarm-down swarm-e2e

# Static glibc binary. RUSTFLAGS only reach the --target artifacts, not build scripts or proc macros.
# No debug info and stripped symbols: the image stays a few megabytes.
docker-bin:
	cd $(DOCKER_ROOT) && \
	RUSTFLAGS="-C target-feature=+crt-static" \
	CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
	$(CARGO) build --release -p distribution-examples --bin distribution-demo \
		--target $(DOCKER_TRIPLE) --target-dir $(DOCKER_TARGET_DIR)

docker: docker-bin
	@mkdir -p $(DOCKER_CONTEXT)
	cp $(DOCKER_BIN) $(DOCKER_CONTEXT)/distribution-demo
	$(DOCKER) build -q -f $(DOCKER_DIR)/Dockerfile -t $(DOCKER_IMAGE) $(DOCKER_CONTEXT)
	@$(DOCKER) image prune -f --filter label=org.opencontainers.image.title=distribution-demo >/dev/null
	@$(DOCKER) image ls $(DOCKER_IMAGE) --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'

docker-check-compose:
	@test -n "$(COMPOSE)" || { echo "neither 'docker compose' nor 'docker-compose' is installed" >&2; exit 1; }

demo-up: docker docker-check-compose
	$(DEMO_COMPOSE) up -d --scale node=$(or $(N),3)
	@echo "demo up: gateway $(DEMO_GATEWAY)/sum  registry $(DEMO_REGISTRY)/v1/nodes"
	@$(if $(filter 2,$(MASTERS)),echo "second master: gateway http://127.0.0.1:3004/sum  registry http://127.0.0.1:3003/v1/nodes")
	@echo "try: make demo-sum; make demo-scale N=5; make demo-down"

# Several /sum calls in parallel (each line names the node that answered), then /palindrom.
demo-sum:
	@for i in 1 2 3 4 5 6; do curl -sS --max-time 10 "$(DEMO_GATEWAY)/sum" & done; wait
	@curl -sS --max-time 60 "$(DEMO_GATEWAY)/palindrom?n=2000"

demo-scale: docker-check-compose
	@test -n "$(N)" || { echo "usage: make demo-scale N=5" >&2; exit 1; }
	$(DEMO_COMPOSE) up -d --no-recreate --scale node=$(N)
	@echo "the master lists the nodes within a few seconds: curl -s $(DEMO_REGISTRY)/v1/nodes"

demo-down: docker-check-compose
	$(DEMO_COMPOSE) down --remove-orphans

docker-e2e: docker
	DIST_IMAGE=$(DOCKER_IMAGE) COMPOSE="$(COMPOSE)" $(DOCKER_DIR)/e2e.sh

# Swarm: the stack uses the image built here by tag, without a registry (single-node swarm; on
# several hosts, push the image to a registry they share and drop `--resolve-image never`).
swarm-up: docker
	@if [ "$$($(DOCKER) info --format '{{.Swarm.LocalNodeState}}')" != active ]; then \
		echo "swarm mode is inactive: docker swarm init"; \
		$(DOCKER) swarm init >/dev/null 2>&1 || $(DOCKER) swarm init --advertise-addr 127.0.0.1 >/dev/null; \
	fi
	DIST_IMAGE=$(DOCKER_IMAGE) DIST_NODES=$(or $(N),3) \
		$(DOCKER) stack deploy --resolve-image never -c $(DOCKER_DIR)/stack.yml $(SWARM_STACK)
	@echo "stack $(SWARM_STACK) deploying: gateway $(DEMO_GATEWAY)/sum  registry $(DEMO_REGISTRY)/v1/nodes"
	@echo "try: docker stack services $(SWARM_STACK); make swarm-scale N=6; make swarm-down"

swarm-scale:
	@test -n "$(N)" || { echo "usage: make swarm-scale N=6" >&2; exit 1; }
	$(DOCKER) service scale $(SWARM_STACK)_node=$(N)
	@echo "the master lists the nodes within a few seconds: curl -s $(DEMO_REGISTRY)/v1/nodes"

swarm-down:
	$(DOCKER) stack rm $(SWARM_STACK)
	@echo "swarm mode is still on; 'docker swarm leave --force' turns it off"

swarm-e2e: docker
	DIST_IMAGE=$(DOCKER_IMAGE) $(DOCKER_DIR)/swarm-e2e.sh
