//! DPF: packet filters merged into one trie and compiled to native code (issue 3).
#![no_std]
