//! The GDT (kernel and user segments) and the TSS (the ring-0 stack for traps from ring 3 and
//! a separate stack for double faults), plus the `syscall` MSRs.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::model_specific::{LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// The IST slot used for double faults.
pub const DOUBLE_FAULT_IST: u16 = 0;

unsafe extern "C" {
    static boot_stack_top: u8;
    static fault_stack_top: u8;
    fn syscall_entry();
}

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, [SegmentSelector; 5])> = Once::new();

/// Loads the GDT and TSS and programs the `syscall` MSRs.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.privilege_stack_table[0] = VirtAddr::from_ptr(&raw const boot_stack_top);
        tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize] = VirtAddr::from_ptr(&raw const fault_stack_top);
        tss
    });
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, [kernel_code, kernel_data, user_data, user_code, tss])
    });
    let [kernel_code, kernel_data, user_data, user_code, tss_selector] = *selectors;
    assert_eq!(u64::from(user_code.0), crate::trapframe::USER_CODE_SELECTOR);
    assert_eq!(u64::from(user_data.0), crate::trapframe::USER_DATA_SELECTOR);
    gdt.load();
    // SAFETY: the selectors name the descriptors just loaded; the TSS is 'static.
    unsafe {
        CS::set_reg(kernel_code);
        SS::set_reg(kernel_data);
        DS::set_reg(kernel_data);
        ES::set_reg(kernel_data);
        load_tss(tss_selector);
    }
    Star::write(user_code, user_data, kernel_code, kernel_data).expect("GDT order fits syscall/sysret");
    LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
    // NT must be clear in the kernel: iretq with NT set faults in ring 0 (a user could set it
    // with popf and then make any syscall).
    SFMask::write(
        RFlags::INTERRUPT_FLAG | RFlags::TRAP_FLAG | RFlags::DIRECTION_FLAG | RFlags::ALIGNMENT_CHECK | RFlags::NESTED_TASK,
    );
}
