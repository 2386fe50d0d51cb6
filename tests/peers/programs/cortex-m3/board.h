/* TI Stellaris LM3S6965 (QEMU -M lm3s6965evb): UART0 is a PL011 at 0x4000C000. */
#define BOARD_NAME "cortex-m3"
#define UART0_DR (*(volatile unsigned int *)0x4000C000u)
#define UART0_FR (*(volatile unsigned int *)0x4000C018u)
#define UART_FR_TXFF (1u << 5)

static inline void board_putc(char c) {
    while (UART0_FR & UART_FR_TXFF)
        ;
    UART0_DR = (unsigned char)c;
}
