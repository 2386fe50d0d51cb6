/* The bare-metal test program (the same on every architecture; board.h gives the UART).
 * It prints a banner, fills `pattern`, then loops for ever calling tick() (the function the
 * tests break on), updating `counter` and `watched` (what they read and watch), and printing
 * "poked N" on the UART whenever a debugger has written a non-zero N into `poked`. It
 * echoes bytes received on the UART (console input). Line numbers matter: tests name them. */
#include "board.h"

volatile unsigned int counter;
volatile unsigned int watched;
volatile unsigned int poked;
unsigned char pattern[4096];

static void uart_puts(const char *s) {
    while (*s)
        board_putc(*s++);
}

static void uart_put_decimal(unsigned int n) {
    char digits[10];
    int i = 0;
    do {
        digits[i++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    while (i)
        board_putc(digits[--i]);
}

__attribute__((noinline)) void tick(unsigned int n) {
    counter = n;
    __asm__ volatile("" ::: "memory");
}

int main(void) {
    uart_puts("virtrio bare-metal " BOARD_NAME ": hello\n");
    for (unsigned int i = 0; i < sizeof pattern; i++)
        pattern[i] = (unsigned char)(i * 7 + 1);
    for (unsigned int i = 1;; i++) {
        tick(i);
        watched = i;
        if (poked) {
            uart_puts("poked ");
            uart_put_decimal(poked);
            board_putc('\n');
            poked = 0;
        }
        int c = board_getc();
        if (c >= 0)
            board_putc((char)c);
    }
}
