/* PVH entry (QEMU -kernel loads an ELF with this note): 32-bit protected mode, paging off.
 * Identity-map the first GiB with 2 MiB pages, enter long mode, call main in 64-bit code. */
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4, 4, 18              /* name size, desc size, XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .long _start32
    .p2align 2

    .section .text.boot, "ax"
    .code32
    .globl _start32
_start32:
    cli
    mov $stack_top, %esp
    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx       /* EFER */
    rdmsr
    or $0x100, %eax             /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax        /* PG | PE */
    mov %eax, %cr0
    lgdt gdt_ptr
    ljmp $0x08, $_start64

    .code64
_start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov $stack_top, %rsp
    call main
1:  hlt
    jmp 1b

    .section .data
    .p2align 12
pml4:
    .quad pdpt + 3
    .fill 511, 8, 0
pdpt:
    .quad pd + 3
    .fill 511, 8, 0
pd:
    .set i, 0
    .rept 512
    .quad (i << 21) | 0x83
    .set i, i + 1
    .endr
gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 64-bit code */
    .quad 0x00cf92000000ffff    /* data */
gdt_ptr:
    .word gdt_ptr - gdt - 1
    .long gdt

    .section .bss
    .p2align 4
    .skip 16384
stack_top:
    .section .note.GNU-stack, "", @progbits
