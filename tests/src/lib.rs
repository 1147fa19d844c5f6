//! Test harness for booting xok in QEMU.
