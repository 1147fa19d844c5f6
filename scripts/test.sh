#!/usr/bin/env bash
# The whole test suite: lints (warnings are errors), host unit tests of every crate, then the
# QEMU tests (which build the kernel image themselves). Release mode: Cranelift and the
# property tests are slow unoptimized.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
cargo clippy --release --workspace --all-targets -- -D warnings
cargo clippy --release -p xok -p exos -p xok-abi -p userland --target x86_64-unknown-none -- -D warnings
cargo test --workspace --release
echo "test.sh: whole suite took $(( $(date +%s) - start )) s"
