"""``virtrio mux serve --echo`` in its own process: the real peer of the xtransport and
messaging rows, so it can be killed with SIGKILL and started again on the same address."""

from __future__ import annotations

import re
import subprocess
import sys

import attrs
import trio

__all__ = ["MuxServer"]


@attrs.define
class MuxServer:
    """Start with :meth:`start`; always :meth:`stop` (kills and reaps)."""

    address: str
    transport: str
    process: trio.Process | None = None

    async def start(self) -> None:
        """Start the server and return once it printed that it is listening."""
        self.process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "virtrio", "mux", "serve", self.address, "--echo",
             "--transport", self.transport],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await self.process.stdout.receive_some(1)
                assert chunk, "the mux server exited before it was listening"
                line += chunk
        assert re.fullmatch(rb"serving \w+ echo on \S+\n", line), line

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
