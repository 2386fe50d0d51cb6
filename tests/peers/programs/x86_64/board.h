/* A PC (QEMU -M pc): COM1, a 16550 at I/O port 0x3f8. */
#define BOARD_NAME "x86_64"
#define COM1 0x3f8
#define COM1_LSR (COM1 + 5)
#define LSR_THRE 0x20
#define LSR_DR 0x01

static inline unsigned char inb(unsigned short port) {
    unsigned char v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline void outb(unsigned short port, unsigned char v) {
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void board_putc(char c) {
    while (!(inb(COM1_LSR) & LSR_THRE))
        ;
    outb(COM1, (unsigned char)c);
}

/* A byte received on COM1, or -1 if none is waiting. */
static inline int board_getc(void) {
    if (!(inb(COM1_LSR) & LSR_DR))
        return -1;
    return inb(COM1);
}
