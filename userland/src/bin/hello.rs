//! Says hello: the smallest program, used by the boot test. `hello panic` panics instead, to
//! show that a panic prints its message and ends the program with status 101.
#![cfg_attr(target_os = "none", no_std, no_main)]

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let words = args.to_vec();
    if words.first() == Some(&"panic") {
        panic!("asked to panic");
    }
    exos::println!("hello from env {:08x} with args {:?}", exos::sys::env_id().0, words);
    0
}
