"""Debug a bare-metal program under QEMU through its gdbstub: break on a function, read
registers and a variable, write memory, watch a variable, step, interrupt.

Start QEMU halted with its gdbstub on a Unix socket, then run this with the program's ELF::

    qemu-system-arm -M lm3s6965evb -nodefaults -display none -S -kernel program.elf \\
        -chardev socket,id=gdb0,path=/tmp/gdb.sock,server=on,wait=off -gdb chardev:gdb0
    python docs/examples/gdb_breakpoint.py unix:/tmp/gdb.sock program.elf

The program is tests/peers/programs' (``python -m tests.peers.programs`` builds it): it calls
``tick(n)`` for ever and sets ``counter`` and ``watched``. Symbols come from ``nm``.
"""

from __future__ import annotations

import subprocess
import sys

import trio

from virtrio.channels.gdb import Stopped, open_gdb


def symbols(elf: str, nm: str = "nm") -> dict[str, int]:
    """Function and variable addresses (``arm-none-eabi-nm`` clears ARM's Thumb bit)."""
    out = subprocess.run([nm, elf], check=True, capture_output=True, text=True).stdout
    return {p[2]: int(p[0], 16) for line in out.splitlines() if len(p := line.split()) == 3}


async def main(address: str, elf: str, nm: str) -> None:
    sym = symbols(elf, nm)
    async with open_gdb(address, call_timeout=10) as gdb:
        print("architecture:", gdb.target.architecture)
        pc = "rip" if "rip" in gdb.target.registers_by_name else "pc"

        await gdb.set_breakpoint(sym["tick"])
        await gdb.continue_()  # returns once sent; the stop comes later
        stop = await gdb.wait_stop(timeout=10)
        print("stopped:", stop)
        registers = await gdb.read_registers()
        print(f"{pc} = {registers[pc]:#x} (tick is at {sym['tick']:#x})")

        await gdb.continue_()  # steps off the breakpoint first, then runs to the next call
        await gdb.wait_stop(timeout=10)
        counter = int.from_bytes(await gdb.read_memory(sym["counter"], 4), "little")
        print("counter =", counter)
        await gdb.remove_breakpoint(sym["tick"])

        await gdb.write_memory(sym["poked"], (7).to_bytes(4, "little"))  # it prints "poked 7"
        await gdb.set_watchpoint(sym["watched"], 4, access="write")
        await gdb.continue_()
        watch = await gdb.wait_stop(timeout=10)
        assert isinstance(watch, Stopped)
        print(f"watchpoint: {watch.reason} at {watch.address:#x}")
        await gdb.remove_watchpoint(sym["watched"], 4, access="write")
        print("step:", await gdb.step())

        with gdb.events() as events:  # stop replies and console output, as they come
            await gdb.continue_()
            stop = await gdb.interrupt()  # \x03: the target stops with SIGINT (2)
            print("interrupted:", stop, "event:", await events.receive() == stop)
        print(await gdb.monitor("info version"), end="")


if __name__ == "__main__":
    address, elf = sys.argv[1], sys.argv[2]
    nm = sys.argv[3] if len(sys.argv) > 3 else ("nm" if "x86" in elf else "arm-none-eabi-nm")
    trio.run(main, address, elf, nm)
