/* A bare-metal guest that drives QXL in native mode: full-screen 1024x768x32 bitmaps, forever.
 *
 * Built by benchmarks/spice_fps.py (gcc -m32, freestanding) into a 32-bit multiboot kernel for
 * QEMU's -kernel. It finds the QXL PCI device, resets it, adds one memory slot over BAR 0 (the
 * device RAM: primary surface at its start, then the bitmaps, then the drawables), creates a
 * 1024x768 primary surface, then per frame: takes a free bitmap (a resource spice-server has
 * released, read from the release ring), fills it with a new solid colour, and pushes a
 * QXL_CMD_DRAW of a QXL_DRAW_COPY of that whole bitmap onto the command ring, kicking
 * QXL_IO_NOTIFY_CMD. spice-server's worker takes each command as it comes, not on QEMU's GUI
 * refresh timer. Released resources reach the ring in bunches of 32; with fewer bitmaps than
 * that in flight the guest asks for the rest with QXL_IO_NOTIFY_OOM (the worker thread flushes
 * what it released) when it has none free.
 *
 * The keyboard pauses it: after a 'p' key it finishes the frame under way, writes "paused" and
 * the number of frames pushed so far, and pushes nothing until an 'r' key; so the benchmark can
 * compare a client's framebuffer with the server's final frame. (A QMP stop would not do: QEMU
 * keeps spice-server's worker running while the VM is paused, and a screendump of a paused QXL
 * reads the surface memory, which spice-server draws into only when asked to.)
 *
 * Diagnostics go to port 0xe9 (QEMU -debugcon). Structure layouts follow spice-protocol's
 * qxl_dev.h (all packed, little-endian).
 */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int s32;

#define WIDTH 1024
#define HEIGHT 768
#define STRIDE (WIDTH * 4)
#define FRAME (STRIDE * HEIGHT)
#define NBUF 8

enum {
    IO_NOTIFY_CMD = 0,
    IO_NOTIFY_OOM = 4,
    IO_RESET = 5,
    IO_MEMSLOT_ADD = 8,
    IO_CREATE_PRIMARY = 12,
};

struct __attribute__((packed)) rect { s32 top, left, bottom, right; };

struct __attribute__((packed)) rom {
    u32 magic, id, update_id, compression_level, log_level, mode, modes_offset, num_pages;
    u32 pages_offset, draw_area_offset, surface0_area_size, ram_header_offset, mm_clock;
    u32 n_surfaces;
    u64 flags;
    u8 slots_start, slots_end, slot_gen_bits, slot_id_bits, slot_generation;
};

struct __attribute__((packed)) ring_head {
    u32 num_items, prod, notify_on_prod, cons, notify_on_cons;
};
struct __attribute__((packed)) command { u64 data; u32 type, padding; };

struct __attribute__((packed)) ram {
    u32 magic, int_pending, int_mask;
    u8 log_buf[4096];
    struct ring_head cmd_ring;
    struct command cmd_items[32];
    struct ring_head cursor_ring;
    struct command cursor_items[32];
    struct ring_head release_ring;
    u64 release_items[8];
    struct rect update_area;
    u32 update_surface;
    u64 mem_start, mem_end;
    /* QXLSurfaceCreate */
    u32 width, height;
    s32 stride;
    u32 format, position, mouse_mode, flags, type;
    u64 mem;
};

struct __attribute__((packed)) drawable {
    u64 release_info;
    u32 surface_id;
    u8 effect, type, self_bitmap;
    struct rect self_bitmap_area, bbox;
    u32 clip_type;
    u64 clip_data;
    u32 mm_time;
    s32 surfaces_dest[3];
    struct rect surfaces_rects[3];
    /* QXLCopy */
    u64 src_bitmap;
    struct rect src_area;
    u16 rop_descriptor;
    u8 scale_mode;
    u8 mask_flags;
    s32 mask_x, mask_y;
    u64 mask_bitmap;
    u8 pad[64]; /* the rest of the union */
};

struct __attribute__((packed)) image {
    u64 id;
    u8 type, flags;
    u32 width, height;
    /* QXLBitmap */
    u8 format, bflags;
    u32 x, y, stride;
    u64 palette, data;
};

struct resource {
    struct drawable draw;
    struct image image;
    u8 pad[512 - sizeof(struct drawable) - sizeof(struct image)];
};

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) {
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline u32 inl(u16 port) {
    u32 v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline void mb(void) { __asm__ volatile("lock; addl $0, (%%esp)" ::: "memory"); }

static void say(const char *s) {
    while (*s) outb(0xe9, (u8)*s++);
}
static void hex(u32 v) {
    char b[11] = "0x";
    for (int i = 0; i < 8; i++) b[2 + i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 15];
    b[10] = 0;
    say(b);
}

static u32 pci_read(u32 dev, u32 reg) {
    outl(0xcf8, 0x80000000u | (dev << 11) | reg);
    return inl(0xcfc);
}
static void pci_write(u32 dev, u32 reg, u32 v) {
    outl(0xcf8, 0x80000000u | (dev << 11) | reg);
    outl(0xcfc, v);
}

static u8 *bar0;
static u32 io;
static u64 high;
static volatile struct ram *ramh;

static u64 phys(const volatile void *p) { return high | (u64)((u32)p - (u32)bar0); }

static void fill(u32 *dst, u32 colour) {
    u32 n = FRAME / 4;
    __asm__ volatile("cld; rep stosl" : "+D"(dst), "+c"(n) : "a"(colour) : "memory");
}

static struct resource *res;
static u8 *bitmaps;
static volatile u8 busy[NBUF];
static u32 released_count, oom_count;

/* take every released resource off the release ring */
static void collect(void) {
    volatile struct ring_head *r = &ramh->release_ring;
    while (r->cons != r->prod) {
        u64 id = ramh->release_items[r->cons & (r->num_items - 1)];
        while (id) {
            u32 i = (u32)id - 1;
            volatile struct drawable *d = &res[i].draw;
            id = d->release_info; /* now the next released id */
            busy[i] = 0;
            released_count++;
        }
        mb();
        r->cons++;
        mb();
    }
}

/* the keyboard: 'p' (set-1 make code 0x19) pauses the drawing, 'r' (0x13) resumes it */
static int paused;
static void keys(void) {
    while (inb(0x64) & 1) {
        u8 code = inb(0x60);
        if (code == 0x19) paused = 1;
        if (code == 0x13) paused = 0;
    }
}

static void pause_while_asked(u32 frames) {
    keys();
    if (!paused) return;
    say("paused ");
    hex(frames);
    say("\n");
    while (paused) {
        for (int k = 0; k < 10000; k++) __asm__ volatile("pause");
        collect();
        keys();
    }
    say("resumed\n");
}

/* wait until bitmap i is free; a pause asked for meanwhile is taken here (a client that stops
 * reading holds every bitmap) */
static u32 take(u32 i, u32 frames) {
    u32 spins = 0;
    for (;;) {
        collect();
        if (!busy[i]) return i;
        if (++spins % 20000 == 0) {
            oom_count++;
            outb(io + IO_NOTIFY_OOM, 0);
            pause_while_asked(frames);
        }
        __asm__ volatile("pause");
    }
}

static void push(volatile struct resource *r) {
    volatile struct ring_head *ring = &ramh->cmd_ring;
    while (ring->prod - ring->cons >= ring->num_items) __asm__ volatile("pause");
    volatile struct command *c = &ramh->cmd_items[ring->prod & (ring->num_items - 1)];
    c->data = phys(&r->draw);
    c->type = 1; /* QXL_CMD_DRAW */
    c->padding = 0;
    mb();
    ring->prod++;
    mb();
    outb(io + IO_NOTIFY_CMD, 0);
}

void kmain(void) {
    u32 dev;
    say("qxl guest\n");
    for (dev = 0; dev < 32; dev++)
        if (pci_read(dev, 0) == 0x01001b36u) break;
    if (dev == 32) {
        say("no qxl\n");
        for (;;) __asm__ volatile("hlt");
    }
    pci_write(dev, 4, pci_read(dev, 4) | 3); /* I/O and memory decoding */
    bar0 = (u8 *)(pci_read(dev, 0x10) & ~15u);
    volatile struct rom *rom = (volatile struct rom *)(pci_read(dev, 0x18) & ~15u);
    io = pci_read(dev, 0x1c) & ~3u;
    pci_write(dev, 0x10, ~0u);
    u32 size0 = ~(pci_read(dev, 0x10) & ~15u) + 1;
    pci_write(dev, 0x10, (u32)bar0);
    say("bar0 ");
    hex((u32)bar0);
    say(" size ");
    hex(size0);
    say(" rom ");
    hex((u32)rom);
    say(" io ");
    hex(io);
    say("\n");
    if (rom->magic != 0x4f525851u) say("bad rom magic\n");

    outb(io + IO_RESET, 0);
    ramh = (volatile struct ram *)(bar0 + rom->ram_header_offset);
    if (ramh->magic != 0x41525851u) say("bad ram magic\n");

    u32 slot = rom->slots_start;
    ramh->mem_start = (u32)bar0;
    ramh->mem_end = (u32)bar0 + rom->ram_header_offset;
    outb(io + IO_MEMSLOT_ADD, (u8)slot);
    high = ((u64)slot << (64 - rom->slot_id_bits)) |
           ((u64)rom->slot_generation << (64 - rom->slot_id_bits - rom->slot_gen_bits));

    bitmaps = bar0 + rom->surface0_area_size;
    res = (struct resource *)(bitmaps + NBUF * FRAME);
    if ((u8 *)(res + NBUF) > bar0 + rom->ram_header_offset) say("device RAM too small\n");

    ramh->width = WIDTH;
    ramh->height = HEIGHT;
    ramh->stride = STRIDE;
    ramh->format = 32; /* SPICE_SURFACE_FMT_32_xRGB */
    ramh->position = 0;
    ramh->mouse_mode = 0;
    ramh->flags = 0;
    ramh->type = 0; /* primary */
    ramh->mem = phys(bar0);
    outb(io + IO_CREATE_PRIMARY, 0);
    say("primary created\n");

    u32 colour = 0x00204080u;
    for (u32 frame = 0;; frame++) {
        pause_while_asked(frame);
        u32 i = take(frame % NBUF, frame);
        busy[i] = 1;
        u8 *bits = bitmaps + i * FRAME;
        fill((u32 *)bits, colour);
        colour = (colour + 0x00030507u) & 0x00ffffffu;
        volatile struct resource *r = &res[i];
        volatile struct image *im = &r->image;
        im->id = 0;
        im->type = 0; /* SPICE_IMAGE_TYPE_BITMAP */
        im->flags = 0;
        im->width = WIDTH;
        im->height = HEIGHT;
        im->format = 8; /* SPICE_BITMAP_FMT_32BIT */
        im->bflags = 1 | 4; /* QXL_BITMAP_DIRECT | QXL_BITMAP_TOP_DOWN */
        im->x = WIDTH;
        im->y = HEIGHT;
        im->stride = STRIDE;
        im->palette = 0;
        im->data = phys(bits);
        volatile struct drawable *d = &r->draw;
        d->release_info = i + 1;
        d->surface_id = 0;
        d->effect = 1; /* QXL_EFFECT_OPAQUE */
        d->type = 3;   /* QXL_DRAW_COPY */
        d->self_bitmap = 0;
        d->bbox.top = 0;
        d->bbox.left = 0;
        d->bbox.bottom = HEIGHT;
        d->bbox.right = WIDTH;
        d->clip_type = 0; /* SPICE_CLIP_TYPE_NONE */
        d->clip_data = 0;
        d->mm_time = rom->mm_clock;
        for (int k = 0; k < 3; k++) d->surfaces_dest[k] = -1;
        d->src_bitmap = phys(im);
        d->src_area.top = 0;
        d->src_area.left = 0;
        d->src_area.bottom = HEIGHT;
        d->src_area.right = WIDTH;
        d->rop_descriptor = 1 << 3; /* SPICE_ROPD_OP_PUT */
        d->scale_mode = 0;
        d->mask_flags = 0;
        d->mask_x = 0;
        d->mask_y = 0;
        d->mask_bitmap = 0;
        push(r);
        if (frame % 4096 == 0) {
            say("frame ");
            hex(frame);
            say(" released ");
            hex(released_count);
            say(" oom ");
            hex(oom_count);
            say("\n");
        }
    }
}

/* multiboot v1 header (magic, flags, checksum) and the entry: a stack, then kmain */
__asm__(".section .multiboot, \"a\"\n"
        ".align 4\n"
        ".long 0x1badb002, 0, -0x1badb002\n"
        ".text\n"
        ".globl _start\n"
        "_start:\n"
        "  cli\n"
        "  mov $stack_top, %esp\n"
        "  call kmain\n"
        "1: hlt\n"
        "  jmp 1b\n"
        ".bss\n"
        ".align 16\n"
        "  .skip 65536\n"
        "stack_top:\n");
