# One entry point for people. Each target calls a script or the tools crate.
.PHONY: setup image run test bench

# What init starts for `make run`: program[:arg...] separated by commas.
CMDLINE ?= init=hello,worker,sysbench

setup:
	@scripts/setup.sh

image: setup
	cargo run --release -q -p xok-tools -- image

run: setup
	cargo run --release -q -p xok-tools -- run "$(CMDLINE)"

test: setup
	scripts/test.sh

bench: setup
	scripts/bench.sh
