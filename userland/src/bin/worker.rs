//! A well-behaved program that does real work beside `hostile`: it sieves primes on its heap,
//! yielding as it goes, and prints a result the test checks and how long it took.
//! `worker:<rounds>:<delay_ms>:<envs>` sieves `rounds` times after waiting `delay_ms` and until
//! at least `envs` environments run (at most 30 s): the neighbour the load tests time, started
//! once the load is all there.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec;
use exos::{println, sys};

exos::entry!(run);

/// Primes below this bound: 17 984 of them.
const LIMIT: usize = 200_000;

fn run(args: exos::Args) -> i32 {
    let words = args.to_vec();
    let rounds: usize = words.first().and_then(|w| w.parse().ok()).unwrap_or(1);
    let delay_ms: u64 = words.get(1).and_then(|w| w.parse().ok()).unwrap_or(0);
    let envs: usize = words.get(2).and_then(|w| w.parse().ok()).unwrap_or(0);
    let ready = sys::time() + delay_ms * 1_000_000;
    let give_up = sys::time() + 30_000_000_000;
    while (sys::time() < ready || sys::kernel_stat(exos::abi::Stat::Envs) < envs) && sys::time() < give_up {
        sys::env_yield();
    }
    println!("worker: started beside {} environments", sys::kernel_stat(exos::abi::Stat::Envs));
    let start = sys::time();
    let mut count = 0;
    for _ in 0..rounds {
        count = sieve();
    }
    let mut blocks = vec::Vec::new();
    for i in 0..64u64 {
        blocks.push(vec![i; 4096]);
    }
    let sum: u64 = blocks.iter().map(|b| b.iter().sum::<u64>()).sum();
    println!("worker: primes below {LIMIT}: {count}; heap checksum {sum}");
    println!("worker: done in {} ms", (sys::time() - start) / 1_000_000);
    0
}

/// Counts the primes below [`LIMIT`], yielding now and then.
fn sieve() -> usize {
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
    count
}
