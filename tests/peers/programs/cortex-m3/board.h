/* TI Stellaris LM3S6965 (QEMU -M lm3s6965evb): UART0 is a PL011 at 0x4000C000. */
#define BOARD_NAME "cortex-m3"
#define UART0_DR (*(volatile unsigned int *)0x4000C000u)
#define UART0_FR (*(volatile unsigned int *)0x4000C018u)
#define UART_FR_TXFF (1u << 5)
#define UART_FR_RXFE (1u << 4)

static inline void board_putc(char c) {
    while (UART0_FR & UART_FR_TXFF)
        ;
    UART0_DR = (unsigned char)c;
}

/* A byte received on the UART, or -1 if none is waiting. */
static inline int board_getc(void) {
    if (UART0_FR & UART_FR_RXFE)
        return -1;
    return (int)(UART0_DR & 0xffu);
}
