//! The first program. It starts what the kernel command line names: `init=prog[:arg...],...`
//! (for example `init=hello:a:b,worker`), reports each child's id, and exits.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec::Vec;
use exos::println;

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let Some(list) = args.iter().find_map(|word| word.strip_prefix("init=")) else {
        println!("init: no init= on the kernel command line; nothing to start");
        return 0;
    };
    let mut failures = 0;
    for spec in list.split(',').filter(|s| !s.is_empty()) {
        let mut parts = spec.split(':');
        let program = parts.next().unwrap_or_default();
        let words: Vec<&str> = parts.collect();
        match exos::sys::env_spawn(program, &exos::Args::encode(&words)) {
            Ok(id) => println!("init: started {program} as env {:08x}", id.0),
            Err(error) => {
                println!("init: cannot start {program}: {error}");
                failures += 1;
            }
        }
    }
    failures
}
