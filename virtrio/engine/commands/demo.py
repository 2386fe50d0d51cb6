"""``virtrio demo``: the main job of ``make run``.

Boots the demo guest under a QEMU owned by a VM nursery, waits for QMP and the guest agent,
runs a few real operations through both, prints them and every live state change, and shuts
the VM down cleanly.
"""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``virtrio demo``."""
    parser = sub.add_parser(
        "demo", help="boot the demo guest and drive it through QMP and its guest agent"
    )
    parser.add_argument(
        "--boot-timeout", type=float, default=120.0, help="seconds to wait for the guest agent"
    )
    parser.set_defaults(run=run)


def _say(start: float, text: str) -> None:
    print(f"[{time.monotonic() - start:6.2f}s] {text}", flush=True)


async def run(args: argparse.Namespace) -> int:
    """Boot, drive, shut down."""
    import trio

    from virtrio.engine.guest import QemuMachine, open_qemu, require_guest
    from virtrio.errors import ConnectionLostError, VirtrioTimeoutError
    from virtrio.nurseries import StateChange, Subscription, open_vm

    start = time.monotonic()
    image = require_guest()
    echo = "org.virtrio.echo0"
    machine = QemuMachine.demo(image, ports=(echo,))

    async def report_states(changes: Subscription[StateChange]) -> None:
        async for change in changes:
            detail = f" ({change.error})" if change.error else ""
            retry = f", retry in {change.retry_in:.1f}s" if change.retry_in else ""
            _say(start, f"state: {change.channel} {change.state.value}{detail}{retry}")

    _say(start, f"booting the demo guest (kernel {image.kernel_release}) under QEMU/TCG")
    async with open_qemu(machine) as qemu:
        _say(start, f"QEMU pid {qemu.pid}, sockets in {qemu.workdir}")
        async with (
            open_vm("demo", qmp=qemu.qmp_address, qga=qemu.qga_address, connect_timeout=30) as vm,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(report_states, vm.state_changes())
            states = ", ".join(f"{k} {v.value}" for k, v in vm.channel_states().items())
            _say(start, f"VM nursery open: {states}")
            version = await vm.qmp.query_version()
            status = await vm.qmp.query_status()
            _say(start, f"QMP: QEMU {version} ({version.package}), status {status.status}")

            await vm.qga.wait_connected(timeout=args.boot_timeout)
            await vm.qga.ping()
            osinfo = await vm.qga.osinfo()
            _say(
                start,
                f"guest agent: {osinfo.get('pretty-name')} kernel {osinfo.get('kernel-release')}",
            )
            result = await vm.qga.exec_and_wait("uname", ["-a"], timeout=30)
            _say(
                start,
                f"guest-exec uname -a -> exit {result.exit_code}: {result.stdout_text.strip()}",
            )

            await vm.qmp.send_key("ctrl-alt-delete", hold_time=0.05)
            await vm.qmp.type_text("hello from virtrio\n")
            _say(start, "QMP send-key: ctrl-alt-delete and typed 'hello from virtrio\\n'")

            with vm.events("STOP", "RESUME") as pauses:
                await vm.qmp.execute("stop")
                await vm.qmp.execute("cont")
                names = [(await pauses.receive()).name, (await pauses.receive()).name]
            _say(start, f"QMP events after stop/cont: {' then '.join(names)}")

            from virtrio.channels import open_stream

            async with await open_stream(qemu.port_addresses[echo]) as stream:
                t0 = trio.current_time()
                await stream.send_all(b"ping over virtio-serial\n")
                reply = b""
                with trio.fail_after(10):
                    while not reply.endswith(b"\n"):
                        reply += await stream.receive_some()
                rtt = (trio.current_time() - t0) * 1000
            _say(
                start, f"virtio-serial echo port {echo}: {reply.decode().strip()!r} in {rtt:.2f} ms"
            )

            _say(start, "shutting down through the guest agent")
            with vm.events("SHUTDOWN") as shutdowns:
                try:
                    await vm.qga.execute("guest-shutdown", timeout=10)
                except (ConnectionLostError, VirtrioTimeoutError) as exc:
                    # the agent may be gone before it answers: that is the shutdown working
                    _say(
                        start,
                        f"(guest-shutdown: {type(exc).__name__}, as expected while powering off)",
                    )
                with trio.move_on_after(30):
                    event = await shutdowns.receive()
                    _say(start, f"QMP event SHUTDOWN {event.data}")
            with trio.move_on_after(15):
                code = await qemu.wait()
                _say(start, f"QEMU exited with status {code}")
            await trio.sleep(0.1)  # let the last state changes print
            nursery.cancel_scope.cancel()
    _say(start, "done")
    return 0
