/* start.S: multiboot header and entry point of the test guest
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The boot loader (QEMU's -kernel) enters here in 32-bit protected mode
 * with flat segments, paging off, interrupts off, EAX = 0x2BADB002 and
 * EBX = physical address of the multiboot information.
 */

#define MULTIBOOT_MAGIC 0x1BADB002
/* Bit 0: page-align modules. Bit 1: pass the memory map (mem_upper). */
#define MULTIBOOT_FLAGS 0x00000003

        .section .multiboot, "a"
        .balign 4
        .long MULTIBOOT_MAGIC
        .long MULTIBOOT_FLAGS
        .long -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        cld

        /* Clear .bss before the stack in it is used. EAX and EBX carry
         * the multiboot arguments, so keep them in ESI and EBP. */
        movl %eax, %esi
        movl %ebx, %ebp
        movl $__bss_start, %edi
        movl $__bss_end, %ecx
        subl %edi, %ecx
        xorl %eax, %eax
        rep stosb

        movl $stack_top, %esp
        pushl %ebp
        pushl %esi
        call guest_main

        /* guest_main does not return; halt for good if it ever does. */
1:      cli
        hlt
        jmp 1b
        .size _start, . - _start

        .section .bss
        .balign 16
stack_bottom:
        .skip 16384
stack_top:

        .section .note.GNU-stack, "", @progbits
