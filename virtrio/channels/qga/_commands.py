"""Guest-agent commands with typed results, on top of any client that can ``execute``.

:class:`QgaCommands` is the interface of every guest-agent client in virtrio: the direct socket
client (:func:`~virtrio.channels.qga.open_qga`), libvirt's ``qemuAgentCommand``, or a VM handle
that survives reconnects. A subclass implements :meth:`QgaCommands.execute`.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio

from virtrio.errors import ProtocolError, VirtrioTimeoutError
from virtrio.primitives import Backoff, Executor

__all__ = ["ExecResult", "GuestAgentInfo", "QgaCommands"]

#: Bytes per guest-file-read / guest-file-write call.
FILE_CHUNK = 1024 * 1024


@attrs.frozen
class GuestAgentInfo:
    """The result of ``guest-info``."""

    version: str
    #: Commands the agent supports and has enabled.
    enabled: frozenset[str]
    #: Commands the agent knows but has disabled (blocked, or not for this OS).
    disabled: frozenset[str]


@attrs.frozen
class ExecResult:
    """The state of a process started with ``guest-exec`` (``guest-exec-status``)."""

    pid: int
    exited: bool
    #: Exit status if the process exited normally, else None.
    exit_code: int | None = None
    #: Terminating signal if it was killed by one, else None.
    signal: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        """Exited with status 0."""
        return self.exited and self.exit_code == 0

    @property
    def stdout_text(self) -> str:
        """stdout decoded as UTF-8 (invalid bytes replaced)."""
        return self.stdout.decode(errors="replace")

    @property
    def stderr_text(self) -> str:
        """stderr decoded as UTF-8 (invalid bytes replaced)."""
        return self.stderr.decode(errors="replace")


def _b64(value: Any, what: str) -> bytes:
    if value is None:
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"guest agent sent invalid base64 in {what}: {exc}") from None


class QgaCommands(Executor):
    """Typed guest-agent helpers written once against :class:`~virtrio.primitives.Executor`: a
    subclass implements :meth:`execute`, the helpers come with it."""

    async def ping(self, *, timeout: float | None = None) -> None:
        """``guest-ping``: returns once the agent answered."""
        await self.execute("guest-ping", timeout=timeout)

    async def info(self, *, timeout: float | None = None) -> GuestAgentInfo:
        """``guest-info``: the agent's version and commands."""
        value = await self.execute("guest-info", timeout=timeout)
        try:
            commands = value["supported_commands"]
            enabled = frozenset(c["name"] for c in commands if c.get("enabled", True))
            disabled = frozenset(c["name"] for c in commands if not c.get("enabled", True))
            return GuestAgentInfo(str(value["version"]), enabled, disabled)
        except (KeyError, TypeError) as exc:
            raise ProtocolError(f"malformed guest-info reply: {exc}") from None

    async def osinfo(self, *, timeout: float | None = None) -> dict[str, Any]:
        """``guest-get-osinfo``: the guest OS's id, name, kernel release, ..."""
        value = await self.execute("guest-get-osinfo", timeout=timeout)
        if not isinstance(value, dict):
            raise ProtocolError(f"malformed guest-get-osinfo reply {value!r:.100}")
        return value

    async def exec(
        self,
        path: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        input_data: bytes | None = None,
        capture_output: bool = True,
        timeout: float | None = None,
    ) -> int:
        """``guest-exec``: start ``path`` with ``args`` in the guest; returns its pid."""
        arguments: dict[str, Any] = {
            "path": path,
            "arg": list(args),
            "capture-output": capture_output,
        }
        if env is not None:
            arguments["env"] = [f"{k}={v}" for k, v in env.items()]
        if input_data is not None:
            arguments["input-data"] = base64.b64encode(input_data).decode()
        value = await self.execute("guest-exec", arguments, timeout=timeout)
        try:
            return int(value["pid"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError(f"malformed guest-exec reply {value!r:.100}") from None

    async def exec_status(self, pid: int, *, timeout: float | None = None) -> ExecResult:
        """``guest-exec-status``: the process's state, output decoded from base64."""
        value = await self.execute("guest-exec-status", {"pid": pid}, timeout=timeout)
        if not isinstance(value, dict) or "exited" not in value:
            raise ProtocolError(f"malformed guest-exec-status reply {value!r:.100}")
        return ExecResult(
            pid=pid,
            exited=bool(value["exited"]),
            exit_code=value.get("exitcode"),
            signal=value.get("signal"),
            stdout=_b64(value.get("out-data"), "out-data"),
            stderr=_b64(value.get("err-data"), "err-data"),
            stdout_truncated=bool(value.get("out-truncated", False)),
            stderr_truncated=bool(value.get("err-truncated", False)),
        )

    async def exec_and_wait(
        self,
        path: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        input_data: bytes | None = None,
        timeout: float = math.inf,
        poll_interval: float = 0.01,
        max_poll_interval: float = 0.5,
    ) -> ExecResult:
        """Start a process and poll ``guest-exec-status`` until it exits.

        Polls after ``poll_interval`` seconds, growing by half each time up to
        ``max_poll_interval``, so short commands return fast and long ones cost little.

        Raises:
            VirtrioTimeoutError: the process had not exited after ``timeout`` seconds (it keeps
                running in the guest; the message gives its pid).
        """
        backoff = Backoff(
            initial=poll_interval, maximum=max_poll_interval, multiplier=1.5, jitter=0
        )
        pid: int | None = None
        with trio.move_on_after(timeout):
            pid = await self.exec(path, args, env=env, input_data=input_data)
            while True:
                await trio.sleep(backoff.next_delay())
                result = await self.exec_status(pid)
                if result.exited:
                    return result
        what = f"pid {pid}" if pid is not None else "not started"
        raise VirtrioTimeoutError(
            f"guest command {path!r} still running after {timeout:g} s ({what})"
        )

    async def shell(
        self, command: str, *, timeout: float = math.inf, shell: str = "/bin/sh"
    ) -> ExecResult:
        """Run ``command`` with ``sh -c`` in the guest and wait for it."""
        return await self.exec_and_wait(shell, ["-c", command], timeout=timeout)

    async def file_read(self, path: str, *, timeout: float | None = None) -> bytes:
        """Read a whole file from the guest."""
        handle = await self.execute("guest-file-open", {"path": path, "mode": "r"}, timeout=timeout)
        chunks: list[bytes] = []
        try:
            while True:
                value = await self.execute(
                    "guest-file-read", {"handle": handle, "count": FILE_CHUNK}, timeout=timeout
                )
                chunks.append(_b64(value.get("buf-b64"), "buf-b64"))
                if value.get("eof") or not value.get("count"):
                    break
        finally:
            with trio.CancelScope(shield=True):
                await self.execute("guest-file-close", {"handle": handle}, timeout=timeout)
        return b"".join(chunks)

    async def file_write(self, path: str, data: bytes, *, timeout: float | None = None) -> None:
        """Create or truncate a file in the guest and write ``data`` to it."""
        handle = await self.execute("guest-file-open", {"path": path, "mode": "w"}, timeout=timeout)
        try:
            view = memoryview(data)
            for start in range(0, len(data), FILE_CHUNK):
                chunk = base64.b64encode(view[start : start + FILE_CHUNK]).decode()
                await self.execute(
                    "guest-file-write", {"handle": handle, "buf-b64": chunk}, timeout=timeout
                )
        finally:
            with trio.CancelScope(shield=True):
                await self.execute("guest-file-close", {"handle": handle}, timeout=timeout)
