// The PVH entry: QEMU starts here in 32-bit protected mode, paging off, with %ebx pointing at
// the hvm_start_info structure. We identity-map the low 4 GiB (and mirror it at
// 0xffff800000000000 for device registers), enter long mode and call kernel_main(start_info).

.section .note.Xen, "a"
.p2align 2
.long 4                 // name size ("Xen\0")
.long 4                 // descriptor size
.long 18                // XEN_ELFNOTE_PHYS32_ENTRY
.asciz "Xen"
.p2align 2
.long pvh_start

.section .text.boot, "ax"
.code32
.global pvh_start
pvh_start:
    cli
    mov edi, ebx
    mov esp, offset boot_stack_top

    // PML4[0] and PML4[256] -> boot_pdpt.
    mov eax, offset boot_pdpt
    or eax, 3
    mov dword ptr [boot_pml4], eax
    mov dword ptr [boot_pml4 + 256 * 8], eax

    // boot_pdpt[0..4] -> the four page directories.
    xor ecx, ecx
1:
    mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, 3
    mov dword ptr [boot_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jne 1b

    // 2048 2 MiB pages: present, writable, huge.
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov dword ptr [boot_pd + ecx * 8], eax
    mov dword ptr [boot_pd + ecx * 8 + 4], 0
    inc ecx
    cmp ecx, 2048
    jne 2b

    mov eax, offset boot_pml4
    mov cr3, eax
    mov eax, cr4
    or eax, 0x20            // PAE
    mov cr4, eax
    mov ecx, 0xC0000080     // EFER
    rdmsr
    or eax, 0x901           // SCE | LME | NXE
    wrmsr
    mov eax, cr0
    or eax, 0x80010005      // PG | WP | EM (x87/MMX fault: their state is not switched) | PE
    mov cr0, eax

    lgdt [boot_gdt_pointer]
    mov eax, 0x08
    push eax
    mov eax, offset long_mode_entry
    push eax
    retf

.code64
long_mode_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov edi, edi            // clear the upper half carried over from 32-bit mode
    lea rsp, [rip + boot_stack_top]
    call kernel_main
    ud2

.section .rodata
.p2align 3
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF    // 64-bit code
    .quad 0x00CF92000000FFFF    // data
boot_gdt_pointer:
    .word 23
    .long boot_gdt

.section .bss
.p2align 12
// The kernel stack grows down towards a guard area the trap handler checks on every entry
// (the identity map's 2 MiB pages leave no room for an unmapped guard page); the page tables
// lie above the stacks, out of an overflow's way.
.global stack_guard
stack_guard:
    .skip 4096
.global boot_stack_bottom
boot_stack_bottom:
    .skip 262144
.global boot_stack_top
boot_stack_top:
.global fault_stack_bottom
fault_stack_bottom:
    .skip 16384
.global fault_stack_top
fault_stack_top:
.global boot_pml4
boot_pml4:
    .skip 4096
.global boot_pdpt
boot_pdpt:
    .skip 4096
.global boot_pd
boot_pd:
    .skip 4096 * 4
