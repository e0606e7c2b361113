# distribution: the two commands of the README are `make run` and `make test`.
CARGO ?= cargo
DEMO := target/release/distribution-demo

.PHONY: all build run test lint fmt package clean

all: build

build:
	$(CARGO) build --release -p distribution-examples --bin distribution-demo

## run: a master (registry :3000, gateway :3001) and 3 nodes on 127.0.0.1; Ctrl-C stops them all.
run: build
	./examples/run-local.sh $(DEMO)

## test: every test of the workspace (unit, integration over TCP, process-level), then lint,
## and the Kubernetes manifests validated offline (skipped with a message where the validator is
## not installed, except under CI).
test: lint
	@$(CARGO) nextest --version >/dev/null 2>&1 || { \
		echo "cargo-nextest is missing: installing it (cargo install cargo-nextest --locked)"; \
		$(CARGO) install cargo-nextest --locked; }
	$(CARGO) nextest run --workspace --no-fail-fast
	$(CARGO) test --workspace --doc
	./docker/k8s/validate.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

fmt:
	$(CARGO) fmt --all

## package: the four library crates packaged and each built on its own from its .crate, as
## crates.io would (`cargo package`; examples and bench are `publish = false`). Slow: not in `test`.
package:
	$(CARGO) package --workspace --exclude distribution-examples --exclude distribution-bench

clean:
	$(CARGO) clean

-include docker/docker.mk
-include bench.mk
