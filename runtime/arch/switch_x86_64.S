/*
 * switch_x86_64.S - fiber context switch for the System V x86-64 ABI.
 *
 * urt__ctx_switch(void **save_sp, void *to_sp)
 *   pushes the callee-saved registers (rbp rbx r12-r15) on the current stack,
 *   stores the stack pointer in *save_sp, loads to_sp and pops the target's.
 *   The return address on each stack is where that fiber resumes. mxcsr and
 *   the x87 control word are not switched: fibers share the thread's FP setup.
 *   It resumes the target with an indirect jump, not `ret`: a ret would pop
 *   the return-stack predictor's entry for our own caller and mispredict on
 *   every switch, where the jump's target (the scheduler, or the one place a
 *   task parks) is learnt by the indirect predictor. (Shadow stacks would
 *   refuse either way: urt does not mark its objects as shadow-stack ready.)
 *
 * A new fiber's stack (see urt__ctx_init in fiber.c) holds six zeroed/seeded
 * registers and the address of urt__ctx_trampoline, which calls r13(r12).
 */
    .text
    .globl  urt__ctx_switch
    .hidden urt__ctx_switch
    .type   urt__ctx_switch, @function
    .p2align 4
urt__ctx_switch:
    .cfi_startproc
    endbr64
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    popq    %rcx          /* the target's resume address; rcx is caller-saved */
    jmpq    *%rcx
    .cfi_endproc
    .size   urt__ctx_switch, .-urt__ctx_switch

    .globl  urt__ctx_trampoline
    .hidden urt__ctx_trampoline
    .type   urt__ctx_trampoline, @function
    .p2align 4
urt__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    endbr64
    movq    %r12, %rdi
    callq   *%r13
    ud2
    .cfi_endproc
    .size   urt__ctx_trampoline, .-urt__ctx_trampoline

    .section .note.GNU-stack,"",@progbits
