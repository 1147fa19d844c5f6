#!/usr/bin/env bash
# Every benchmark, one after the other (never two builds at once): DPF classify/insert/compile
# on the host, WK predicate evaluation, the transmit header check and exos's demultiplexer on
# the host, and the NIC ceiling, the kernel's DPF classification per frame, exos sockets, Cheetah against httpd, and the profile of where
# their CPU goes, booted in QEMU. Each writes its table and JSON into docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p dpf
cargo bench -p wkpred
cargo bench -p xok --bench transmit_check
cargo bench -p exos --bench demux
cargo bench -p xok-tests --bench nic
cargo bench -p xok-tests --bench kernel_classify
cargo bench -p xok-tests --bench sockets
cargo bench -p xok-tests --bench servers
cargo bench -p xok-tests --bench profile
