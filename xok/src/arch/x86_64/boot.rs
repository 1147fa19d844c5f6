//! From the PVH entry to the first environment: reads the hvm_start_info that QEMU passes, sets
//! up the CPU tables, the kernel heap, physical memory and the timer, then starts `init` with
//! the kernel command line as its arguments.

use super::code::{CODE_WINDOW, CodeArena};
use super::machine::{BareMachine, IDENTITY_MAPPED};
use super::{gdt, idt, serial, timer, trap};
use xok_abi::initrd::Initrd;
use crate::kernel::Kernel;
use crate::kprintln;
use crate::ownership::{Page, PageOwnership};
use crate::vm::{KernelMappings, bits};
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;
use xok_abi::layout::PAGE_SIZE;

const START_INFO_MAGIC: u32 = 0x336e_c578;
const MEMMAP_TYPE_RAM: u32 = 1;

/// `struct hvm_start_info` (xen/include/public/arch-x86/hvm/start_info.h).
#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// `struct hvm_modlist_entry`.
#[repr(C)]
struct ModlistEntry {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

const _: () = assert!(core::mem::size_of::<StartInfo>() == 56);
const _: () = assert!(core::mem::size_of::<ModlistEntry>() == 32);
const _: () = assert!(core::mem::size_of::<MemmapEntry>() == 24);

unsafe extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
    static boot_pml4: [u64; 512];
    static mut boot_pd: [u64; 2048];
}

/// Reads a NUL-terminated string at a physical address in the identity map.
///
/// # Safety
/// `address` must be 0 or point at a NUL-terminated string in identity-mapped memory.
unsafe fn c_string(address: u64) -> String {
    if address == 0 {
        return String::new();
    }
    // SAFETY: the caller promises a NUL-terminated string at `address`.
    let bytes = unsafe { core::ffi::CStr::from_ptr(address as *const core::ffi::c_char) };
    String::from_utf8_lossy(bytes.to_bytes()).into_owned()
}

/// The Rust entry point, called from boot.s in long mode with the hvm_start_info address.
#[unsafe(no_mangle)]
extern "C" fn kernel_main(start_info: u64) -> ! {
    serial::init();
    trap::arm_stack_guard();
    crate::heap::init();
    gdt::init();
    idt::init();
    timer::init();
    timer::calibrate_tsc();

    // SAFETY: QEMU's PVH loader passes the address of a valid hvm_start_info in %ebx, below
    // 4 GiB and therefore identity-mapped; the magic is checked before any other field is used.
    let info = unsafe { &*(start_info as *const StartInfo) };
    if info.magic != START_INFO_MAGIC {
        panic!("no hvm_start_info (magic {:#x}): boot xok with qemu -kernel", info.magic);
    }
    // SAFETY: cmdline_paddr is 0 or a NUL-terminated string, as the PVH protocol specifies.
    let cmdline = unsafe { c_string(info.cmdline_paddr) };
    let memmap: Vec<MemmapEntry> = (0..info.memmap_entries as usize)
        // SAFETY: the PVH loader provides memmap_entries entries at memmap_paddr.
        .map(|i| unsafe { (info.memmap_paddr as *const MemmapEntry).add(i).read_unaligned() })
        .collect();
    if info.nr_modules == 0 {
        panic!("no initrd: boot xok with qemu -kernel xok -initrd initrd.cpio");
    }
    // SAFETY: nr_modules > 0, so modlist_paddr points at least one entry.
    let module = unsafe { (info.modlist_paddr as *const ModlistEntry).read_unaligned() };
    let initrd_range = module.paddr as usize..(module.paddr + module.size) as usize;
    if initrd_range.end > IDENTITY_MAPPED {
        panic!("initrd at {initrd_range:#x?} lies above the identity map");
    }
    // SAFETY: the loader placed the initrd there; its pages are kept out of the allocator below,
    // so nothing else ever writes them.
    let initrd_bytes: &'static [u8] =
        unsafe { core::slice::from_raw_parts(module.paddr as *const u8, module.size as usize) };
    let initrd = Initrd::new(initrd_bytes);
    let files = initrd.validate().unwrap_or_else(|e| panic!("bad initrd: {e:?}"));

    let kernel_image = (&raw const __kernel_start) as usize..(&raw const __kernel_end) as usize;
    let mut pages = physical_pages(&memmap, &[kernel_image.clone(), initrd_range]);
    write_xor_execute(&mut pages);
    let kernel_root = (&raw const boot_pml4) as u64;
    let mut machine = BareMachine::new(kernel_root);
    let (arena, code_entry) = CodeArena::new(&mut pages, &mut machine, Page(kernel_root as usize / PAGE_SIZE));
    machine.code = Some(arena);
    // SAFETY: boot.s filled these tables before entering long mode; they are only read here.
    let (device_window, pd) = unsafe { (boot_pml4[256], (&raw const boot_pd) as u64) };
    let mut upper_half = [0u64; 256];
    upper_half[0] = device_window;
    upper_half[((CODE_WINDOW >> 39) & 511) as usize - 256] = code_entry;
    let mappings = KernelMappings { low_gigabyte: pd | bits::PRESENT | bits::WRITABLE, upper_half };
    let mut kernel = Kernel::new(machine, pages, mappings, initrd);
    // The file store: programs map the initrd's pages read-only. The loader puts it on a page
    // boundary; the rest of its last page (reserved with it, used by nothing) is cleared so
    // that no stale memory becomes readable.
    if module.paddr.is_multiple_of(PAGE_SIZE as u64) {
        let end = (module.paddr + module.size) as usize;
        let tail = end.next_multiple_of(PAGE_SIZE) - end;
        // SAFETY: [end, end + tail) is the rest of the initrd's last page, inside the identity
        // map (checked above) and kept out of the allocator with the initrd; nothing uses it.
        unsafe { core::ptr::write_bytes(end as *mut u8, 0, tail) };
        kernel.share_initrd(Page(module.paddr as usize / PAGE_SIZE));
    } else {
        kprintln!("initrd at {:#x} is not page-aligned: programs cannot map its files", module.paddr);
    }
    // A secret seed for DPF's dispatch hashing, so nobody can aim connections at one bucket.
    kernel.net.dpf = alloc::sync::Arc::new(dpf::Dpf::with_seed(super::cpu::rdtsc()));
    start_nics(&mut kernel);
    kprintln!(
        "booted: image {:#x}..{:#x}, {} free pages ({} MiB), initrd {} files, tsc {} MHz, cmdline \"{}\"",
        kernel_image.start,
        kernel_image.end,
        kernel.boot_free_pages,
        (kernel.boot_free_pages * PAGE_SIZE) >> 20,
        files,
        timer::tsc_hz() / 1_000_000,
        cmdline
    );
    if cmdline.split_whitespace().any(|w| w == "xok.compile=locked") {
        super::trap::COMPILE_LOCKED.store(true, core::sync::atomic::Ordering::Relaxed);
    }
    let args: Vec<u8> = cmdline.split_whitespace().collect::<Vec<_>>().join("\0").into_bytes();
    if let Err(error) = kernel.spawn(None, "init", &args, true, xok_abi::SPAWN_SHARE_WHOLE) {
        panic!("cannot start init: {error}");
    }
    *trap::KERNEL.lock() = Some(kernel);
    if let Some(kind) = cmdline.split_whitespace().find_map(|w| w.strip_prefix("xok.crash=")) {
        crash_on_purpose(kind);
    }
    trap::schedule()
}

/// `xok.crash=page-fault|panic|write-text|execute-data` on the command line makes the kernel
/// fail on purpose, so the tests can check that a kernel fault is reported clearly and ends
/// QEMU with a failure status, and that kernel text is not writable nor data executable.
fn crash_on_purpose(kind: &str) {
    kprintln!("crashing on purpose (xok.crash={kind})");
    match kind {
        // SAFETY: not sound on purpose: this address is unmapped, and the resulting page fault
        // in ring 0 ends the kernel through trap::kernel_fault, which is what is being tested.
        "page-fault" => unsafe {
            core::ptr::read_volatile(0xffff_9000_dead_0000 as *const u64);
        },
        "panic" => panic!("xok.crash=panic"),
        // SAFETY: not sound on purpose: kernel text is mapped read-only, so this write faults.
        "write-text" => unsafe { core::ptr::write_volatile(kernel_main as *const () as *mut u8, 0xcc) },
        "execute-data" => {
            static RET: [u8; 1] = [0xc3];
            let data = (&raw const RET) as usize;
            // SAFETY: not sound on purpose: data pages are no-execute, so the call faults.
            unsafe { core::mem::transmute::<usize, extern "C" fn()>(data)() }
        }
        other => kprintln!("unknown xok.crash={other}; ignored"),
    }
}

/// Makes the identity map W^X: the 2 MiB pages that hold the kernel image are split into
/// 4 KiB pages (text read-only and executable, read-only data read-only, everything else
/// writable and no-execute), and every other 2 MiB page is marked no-execute. The page tables
/// come from `pages`; the same directory serves every address space and the device window.
fn write_xor_execute(pages: &mut PageOwnership) {
    let text = (&raw const __kernel_start) as u64..(&raw const __text_end) as u64;
    let read_only = (&raw const __text_end) as u64..(&raw const __rodata_end) as u64;
    let image_end = (&raw const __kernel_end) as u64;
    let huge = 2u64 << 20;
    let directory = (&raw mut boot_pd) as *mut u64;
    for index in 0..2048u64 {
        let base = index * huge;
        let entry = if base < image_end {
            let table = pages.alloc_kernel().expect("page tables for the kernel image");
            let pte = table.address() as *mut u64;
            for slot in 0..512u64 {
                let address = base + slot * 4096;
                let mut flags = bits::PRESENT;
                if !text.contains(&address) && !read_only.contains(&address) {
                    flags |= bits::WRITABLE;
                }
                if !text.contains(&address) {
                    flags |= bits::NO_EXECUTE;
                }
                // SAFETY: `table` is a fresh kernel page in the identity map; slot < 512.
                unsafe { pte.add(slot as usize).write(address | flags) };
            }
            table.address() as u64 | bits::PRESENT | bits::WRITABLE
        } else {
            // SAFETY: index < 2048, inside the four page directories boot.s built.
            unsafe { *directory.add(index as usize) | bits::NO_EXECUTE }
        };
        // SAFETY: as above; the new entry maps the same physical memory, with fewer rights.
        unsafe { *directory.add(index as usize) = entry };
    }
    let (frame, flags) = x86_64::registers::control::Cr3::read();
    // SAFETY: reloading the same root flushes the stale translations.
    unsafe { x86_64::registers::control::Cr3::write(frame, flags) };
}

/// Finds and starts the NICs on the PCI bus, in bus order, and lets their interrupts in.
fn start_nics(kernel: &mut Kernel<BareMachine>) {
    for device in crate::drivers::pci::devices() {
        let nic: alloc::boxed::Box<dyn crate::net::nic::NicDriver + Send> = match (device.vendor, device.device_id) {
            crate::drivers::e1000::PCI_ID => alloc::boxed::Box::new(crate::drivers::e1000::E1000::new(&device, &mut kernel.pages)),
            crate::drivers::tulip::PCI_ID => alloc::boxed::Box::new(crate::drivers::tulip::Tulip::new(&device, &mut kernel.pages)),
            _ => continue,
        };
        let info = nic.info();
        let m = info.mac;
        kprintln!(
            "nic {}: {:?} at pci 00:{:02x}.{}, irq {}, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, link {}",
            kernel.net.nics.len(),
            info.model,
            device.device,
            device.function,
            nic.irq(),
            m[0], m[1], m[2], m[3], m[4], m[5],
            if info.link_up { "up" } else { "down" }
        );
        timer::unmask(nic.irq());
        kernel.add_nic(nic);
    }
    // The NICs' rings and buffers are the kernel's for good: count free pages from here.
    kernel.finish_boot();
}

/// The ownership table for all RAM below the identity-map limit, with every page that is RAM,
/// above 1 MiB and outside `reserved` on the free list.
fn physical_pages(memmap: &[MemmapEntry], reserved: &[Range<usize>]) -> PageOwnership {
    let ram = |e: &&MemmapEntry| e.kind == MEMMAP_TYPE_RAM;
    let top = memmap.iter().filter(ram).map(|e| (e.addr + e.size) as usize).max().unwrap_or(0);
    let count = top.min(IDENTITY_MAPPED) / PAGE_SIZE;
    let mut pages = PageOwnership::new(count);
    for entry in memmap.iter().filter(ram) {
        let start = (entry.addr as usize).next_multiple_of(PAGE_SIZE).max(1 << 20);
        let end = ((entry.addr + entry.size) as usize).min(IDENTITY_MAPPED) & !(PAGE_SIZE - 1);
        for address in (start..end).step_by(PAGE_SIZE) {
            let page = address..address + PAGE_SIZE;
            if !reserved.iter().any(|r| r.start < page.end && page.start < r.end) {
                pages.add_free(Page(address / PAGE_SIZE));
            }
        }
    }
    pages
}
