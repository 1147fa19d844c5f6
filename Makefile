# One entry point for people. Each target calls a script or the tools crate.
.PHONY: setup image run test bench

# The web server `make run` starts: cheetah (its own TCP) or httpd (the baseline on sockets).
SERVER ?= cheetah
# What init starts for `make run`: program[:arg...] separated by commas (`!` = privileged).
CMDLINE ?= init=arpd,!strayd,$(SERVER)
# The host port forwarded to the guest's port 80.
HTTP_PORT ?= 8080
export XOK_HTTP_PORT = $(HTTP_PORT)
# Where the capture of a `!tcpdump:...:pcap` in CMDLINE goes (empty: no capture file).
PCAP ?=
export XOK_PCAP = $(PCAP)
# Non-empty: run on a tap in a network namespace of its own instead of user networking (root).
NETNS ?=
export XOK_NETNS = $(NETNS)
# With NETNS: faults the relay puts on every frame, both ways (tools/src/relay.rs), e.g.
# FAULTS=loss=5%,delay=10ms,reorder=25%,duplicate=1%,corrupt=1%; SEED picks the random choices.
FAULTS ?=
export XOK_FAULTS = $(FAULTS)
SEED ?= 1
export XOK_SEED = $(SEED)
# The files programs serve (under www/ in the image).
DOCROOT ?= site
export XOK_DOCROOT = $(abspath $(DOCROOT))

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
