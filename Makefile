# One entry point for people. Each target calls a script or the tools crate.
.PHONY: setup image run test bench

setup:
	@scripts/setup.sh

image: setup
	cargo run --release -q -p xok-tools -- image

run: setup
	cargo run --release -q -p xok-tools -- run "$(or $(CMDLINE),init=hello,worker,sysbench)"

test: setup
	scripts/test.sh

bench: setup
	scripts/bench.sh
