//! Says hello: the smallest program, used by the boot test.
#![cfg_attr(target_os = "none", no_std, no_main)]

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let words = args.to_vec();
    exos::println!("hello from env {:08x} with args {:?}", exos::sys::env_id().0, words);
    0
}
