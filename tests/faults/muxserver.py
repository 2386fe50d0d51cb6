"""virtrio's own servers in their own process — ``virtrio mux serve --echo`` (the peer of the
xtransport and messaging rows) and ``virtrio pty-daemon`` — so they can be killed with SIGKILL
and started again on the same address."""

from __future__ import annotations

import re
import subprocess
import sys

import attrs
import trio

__all__ = ["CliServer", "MuxServer", "PtyDaemonProcess"]


@attrs.define
class CliServer:
    """``python -m virtrio ARGV`` that prints one line matching ``ready`` once it listens.
    Start with :meth:`start`; always :meth:`stop` (kills and reaps)."""

    argv: list[str]
    ready: bytes
    process: trio.Process | None = None

    async def start(self) -> None:
        """Start the server and return once it printed that it is listening."""
        self.process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "virtrio", *self.argv], stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await self.process.stdout.receive_some(1)
                assert chunk, f"virtrio {self.argv[0]} exited before it was listening"
                line += chunk
        assert re.fullmatch(self.ready, line), line

    def kill(self) -> None:
        """SIGKILL, at once."""
        assert self.process is not None
        self.process.kill()

    async def stop(self) -> None:
        """Kill (if running) and reap."""
        if self.process is not None:
            if self.process.returncode is None:
                self.process.kill()
            with trio.CancelScope(shield=True):
                await self.process.wait()
            assert self.process.stdout is not None
            await self.process.stdout.aclose()
            self.process = None


class MuxServer(CliServer):
    """``virtrio mux serve ADDRESS --echo --transport TRANSPORT [OPTION ...]`` (``--ack``,
    ``--frame-size N``)."""

    def __init__(self, address: str, transport: str, *options: str) -> None:
        argv = ["mux", "serve", address, "--echo", "--transport", transport, *options]
        super().__init__(argv, rb"serving \w+ echo on \S+\n")
        self.address = address


class PtyDaemonProcess(CliServer):
    """``virtrio pty-daemon --socket PATH``."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(["pty-daemon", "--socket", socket_path], rb"virtrio pty-daemon: .*\n")
        self.socket_path = socket_path
