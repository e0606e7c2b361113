# Benchmarks (issue 6): `make bench` for the figures of BENCHMARKS.md, `make bench-quick` for a
# smoke run of the suite itself (smaller sizes, shorter runs: figures not to quote).
# Extra arguments: make bench BENCH_ARGS="--only overhead,scatter"
CARGO ?= cargo
BENCH_OUT ?= target/bench
BENCH_ARGS ?=

.PHONY: bench bench-quick bench-build

## bench-build: the benchmark (crate `bench/`) and the `distribution-demo` it runs as processes.
bench-build:
	$(CARGO) build --release -p distribution-bench -p distribution-examples --bin distribution-bench --bin distribution-demo

## bench: every benchmark; figures in $(BENCH_OUT)/*.json, the plot in $(BENCH_OUT)/latency.png.
bench: bench-build
	target/release/distribution-bench --out $(BENCH_OUT) $(BENCH_ARGS)

## bench-quick: the same suite in well under a minute, to check that it runs.
bench-quick: bench-build
	target/release/distribution-bench --out $(BENCH_OUT) --quick $(BENCH_ARGS)
