/*
 * switch_aarch64.S - fiber context switch for AAPCS64.
 *
 * urt__ctx_switch(void **save_sp /x0/, void *to_sp /x1/)
 *   saves x19-x28, fp, lr and d8-d15 in a 160-byte frame on the current
 *   stack, stores sp in *x0, switches to x1 and restores the target's frame;
 *   `ret` jumps to the target's saved lr.
 * A new fiber's frame (urt__ctx_init) has lr = urt__ctx_trampoline,
 * x19 = argument, x20 = entry function.
 */
    .text
    .globl  urt__ctx_switch
    .hidden urt__ctx_switch
    .type   urt__ctx_switch, %function
    .p2align 4
urt__ctx_switch:
    sub     sp, sp, #160
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8,  d9,  [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mov     x2, sp
    str     x2, [x0]
    mov     sp, x1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8,  d9,  [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #160
    ret
    .size   urt__ctx_switch, .-urt__ctx_switch

    .globl  urt__ctx_trampoline
    .hidden urt__ctx_trampoline
    .type   urt__ctx_trampoline, %function
    .p2align 4
urt__ctx_trampoline:
    mov     x0, x19
    blr     x20
    brk     #0
    .size   urt__ctx_trampoline, .-urt__ctx_trampoline

    .section .note.GNU-stack,"",%progbits
