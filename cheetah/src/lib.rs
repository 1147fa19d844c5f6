//! Cheetah, the merged-cache HTTP server (a later issue).
#![no_std]
