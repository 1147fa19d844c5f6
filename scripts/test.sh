#!/usr/bin/env bash
# The whole test suite: host unit tests of every crate, then the QEMU tests (which build the
# kernel image themselves). Release mode: Cranelift and the property tests are slow unoptimized.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
cargo test --workspace --release
echo "test.sh: whole suite took $(( $(date +%s) - start )) s"
