//! A well-behaved program that does real work beside `hostile`: it sieves primes on its heap,
//! yielding as it goes, and prints a result the test checks.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec;
use exos::{println, sys};

exos::entry!(run);

/// Primes below this bound: 17 984 of them.
const LIMIT: usize = 200_000;

fn run(_: exos::Args) -> i32 {
    let mut composite = vec![false; LIMIT];
    let mut count = 0;
    for n in 2..LIMIT {
        if !composite[n] {
            count += 1;
            for multiple in (n * n..LIMIT).step_by(n) {
                composite[multiple] = true;
            }
        }
        if n % 20_000 == 0 {
            sys::env_yield();
        }
    }
    let mut blocks = vec::Vec::new();
    for i in 0..64u64 {
        blocks.push(vec![i; 4096]);
    }
    let sum: u64 = blocks.iter().map(|b| b.iter().sum::<u64>()).sum();
    println!("worker: primes below {LIMIT}: {count}; heap checksum {sum}");
    0
}
