# A boot sector that redraws a 1024x768x32 screen continuously: protected mode, the Bochs VBE
# registers (ports 0x1ce/0x1cf) for the mode, the std VGA's BAR0 from PCI config space for the
# linear framebuffer, then a new solid colour over the whole screen each frame, forever.
.code16
.globl _start
_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7c00, %sp
    lgdt gdtdesc
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmp $0x08, $pm
.code32
pm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %esp
    mov $4, %ax          # ENABLE = 0 while the mode changes
    xor %bx, %bx
    call vbe
    mov $1, %ax          # XRES
    mov $1024, %bx
    call vbe
    mov $2, %ax          # YRES
    mov $768, %bx
    call vbe
    mov $3, %ax          # BPP
    mov $32, %bx
    call vbe
    mov $4, %ax          # ENABLE | LFB
    mov $0x41, %bx
    call vbe
    xor %ebx, %ebx
find:
    mov %ebx, %eax
    shl $11, %eax
    or $0x80000000, %eax
    mov $0xcf8, %dx
    out %eax, %dx
    mov $0xcfc, %dx
    in %dx, %eax
    cmp $0x11111234, %eax
    je found
    inc %ebx
    cmp $32, %ebx
    jb find
    hlt
found:
    mov %ebx, %eax
    shl $11, %eax
    or $0x80000010, %eax
    mov $0xcf8, %dx
    out %eax, %dx
    mov $0xcfc, %dx
    in %dx, %eax
    and $0xfffffff0, %eax
    mov %eax, %esi
    mov $0x00204080, %ebp
    cld
frame:
    mov %esi, %edi
    mov %ebp, %eax
    mov $(1024 * 768), %ecx
    rep stosl
    add $0x00030507, %ebp
    and $0x00ffffff, %ebp
    jmp frame
vbe:
    mov $0x1ce, %dx
    out %ax, %dx
    inc %dx
    mov %bx, %ax
    out %ax, %dx
    ret
.p2align 3
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
gdtdesc:
    .word gdtdesc - gdt - 1
    .long gdt
