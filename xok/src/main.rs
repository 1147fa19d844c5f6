//! The xok kernel binary: the boot and trap entry assembly, and the panic handler. Everything
//! else is in the library.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod bare {
    core::arch::global_asm!(include_str!("arch/x86_64/boot.s"));
    core::arch::global_asm!(include_str!("arch/x86_64/entry.s"));

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        xok::arch::x86_64::trap::panic(info)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("xok is a kernel: build it with --target x86_64-unknown-none and boot it in QEMU");
    std::process::exit(2);
}
