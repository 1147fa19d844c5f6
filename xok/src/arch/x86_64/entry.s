// Kernel entry and exit paths. Every way into the kernel (exceptions, interrupts, `syscall`)
// builds a TrapFrame (see trapframe.rs: r15 first, ss last) and calls trap_handler(frame).
// trap_handler returns only for interrupts taken in ring 0 (the idle loop); to enter ring 3
// the kernel calls enter_user(frame), which restores a TrapFrame and executes iretq.

.section .text

.macro TRAP_SAVE_AND_CALL
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    cld
    mov rdi, rsp
    call trap_handler
.endm

.macro RESTORE_AND_IRET
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16             // vector and error code
    iretq
.endm

trap_common:
    TRAP_SAVE_AND_CALL
    RESTORE_AND_IRET

// Vectors where the CPU pushes an error code: 8, 10-14, 17, 21, 29, 30.
.macro TRAP_STUB n
    .p2align 4
trap_stub_\n:
    .if (\n == 8) || (\n >= 10 && \n <= 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    push 0
    .endif
    push \n
    jmp trap_common
.endm

.altmacro
.set n, 0
.rept 48
    TRAP_STUB %n
    .set n, n + 1
.endr

.macro STUB_ADDRESS n
    .quad trap_stub_\n
.endm

.section .rodata
.p2align 3
.global trap_stub_table
trap_stub_table:
.set n, 0
.rept 48
    STUB_ADDRESS %n
    .set n, n + 1
.endr
.noaltmacro

.section .text
// `syscall`: rcx = user rip, r11 = user rflags, interrupts masked by SFMASK.
.global syscall_entry
syscall_entry:
    mov [rip + syscall_user_rsp], rsp
    lea rsp, [rip + boot_stack_top]
    push 0x1b                           // user ss
    push qword ptr [rip + syscall_user_rsp]
    push r11                            // rflags
    push 0x23                           // user cs
    push rcx                            // rip
    push 0                              // error code
    push 0x100                          // SYSCALL_VECTOR
    TRAP_SAVE_AND_CALL
    ud2

// enter_user(frame: *const TrapFrame) -> !
.global enter_user
enter_user:
    mov rsp, rdi
    RESTORE_AND_IRET

.section .bss
.p2align 3
syscall_user_rsp:
    .skip 8
