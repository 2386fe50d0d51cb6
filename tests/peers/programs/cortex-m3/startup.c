/* Cortex-M reset: the vector table (initial stack, reset handler), zeroed .bss, copied .data. */
extern unsigned int _estack, _sbss, _ebss, _sdata, _edata, _sidata;
int main(void);

void reset_handler(void) {
    for (unsigned int *p = &_sbss; p < &_ebss; p++)
        *p = 0;
    for (unsigned int *s = &_sidata, *d = &_sdata; d < &_edata;)
        *d++ = *s++;
    main();
    for (;;)
        ;
}

void default_handler(void) {
    for (;;)
        ;
}

__attribute__((section(".vectors"), used)) const void *const vectors[16] = {
    &_estack,        reset_handler,   default_handler, default_handler,
    default_handler, default_handler, default_handler, 0,
    0,               0,               0,               default_handler,
    default_handler, 0,               default_handler, default_handler,
};
