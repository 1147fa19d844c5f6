//! Wakeup predicates (issue 4).
#![no_std]
