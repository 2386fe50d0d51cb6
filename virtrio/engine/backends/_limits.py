"""Resource limits on an emulator process: memory and CPU share through a cgroup, CPU seconds
through ``RLIMIT_CPU``.

Why not ``RLIMIT_AS`` for memory: QEMU maps about 1.2 GiB of address space before it runs
anything (the TCG code buffer, guest RAM, thread stacks) while its resident set is ~36 MiB, so
an address-space limit either refuses to start it or limits nothing. A cgroup's memory limit
counts what is actually charged (resident pages), and its OOM killer ends the process when it
is exceeded; the cgroup's OOM counter then says that it was the limit.

The child enters its cgroups itself, before it execs the emulator (``sh -c 'echo $$ >
cgroup.procs; exec ...'``, the same pid throughout, like ``setpriv`` and ``prlimit``), so the
limit holds from the emulator's first allocation and the child is still forked by the caller's
thread (the death signal stays). cgroup v1 (``memory``, ``cpu`` hierarchies, as on the test
machines) and v2 (``memory.max``, ``cpu.max``) are both handled; each instance gets a cgroup
below the server's own, removed when the instance closes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import shutil
import signal
from pathlib import Path

import attrs

from ._types import BackendExitedError

__all__ = [
    "AppliedLimits",
    "ResourceLimitExceededError",
    "ResourceLimits",
    "cgroup_support",
    "remove_stale_cgroups",
]

_ROOT = Path("/sys/fs/cgroup")
_PERIOD_US = 100_000


@attrs.frozen
class ResourceLimits:
    """What one instance's emulator may use (None: no limit of that kind).

    ``memory_mb``: charged memory (the emulator's own, not only the guest's RAM);
    ``cpus``: CPU share (1.5: one and a half cores' time per period);
    ``cpu_time_s``: CPU seconds per emulator run, after which it is killed.
    """

    memory_mb: int | None = None
    cpus: float | None = None
    cpu_time_s: float | None = None

    @property
    def needs_cgroup(self) -> bool:
        """Whether these limits need a cgroup (memory or CPU share)."""
        return self.memory_mb is not None or self.cpus is not None


class ResourceLimitExceededError(BackendExitedError):
    """The emulator was killed for exceeding a resource limit.

    Attributes:
        resource: ``memory`` or ``cpu_time``.
        limit: the limit (MiB or CPU seconds).
    """

    def __init__(self, resource: str, limit: float, message: str, *, backend: str) -> None:
        super().__init__(message, backend=backend)
        self.resource = resource
        self.limit = limit


@attrs.frozen
class _Cgroups:
    version: int
    memory: Path | None  # the base directory of the hierarchy that has the controller
    cpu: Path | None


def _own_path(controller: str) -> str | None:
    """This process's cgroup path in the hierarchy of ``controller`` ("" for v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        if controller in names.split(",") or (controller == "" and names == ""):
            return path.lstrip("/")
    return None


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK)


def _probe() -> _Cgroups | None:
    if (_ROOT / "cgroup.controllers").exists():  # the unified (v2) hierarchy alone
        own = _own_path("")
        base = _ROOT / own if own is not None else None
        if base is None or not _writable(base):
            return None
        enabled = (base / "cgroup.subtree_control").read_text().split()
        have = (base / "cgroup.controllers").read_text().split()
        for name in ("memory", "cpu"):
            if name in have and name not in enabled:
                with contextlib.suppress(OSError):  # busy: processes in base itself
                    (base / "cgroup.subtree_control").write_text(f"+{name}")
        enabled = (base / "cgroup.subtree_control").read_text().split()
        memory = base if "memory" in enabled else None
        cpu = base if "cpu" in enabled else None
        return _Cgroups(2, memory, cpu) if memory or cpu else None
    found: dict[str, Path | None] = {}
    for name in ("memory", "cpu"):
        own = _own_path(name)
        base = _ROOT / name / own if own is not None else None
        found[name] = base if base is not None and _writable(base) else None
    if found["memory"] is None and found["cpu"] is None:
        return None
    return _Cgroups(1, found["memory"], found["cpu"])


_PROBED: list[_Cgroups | None] = []


def _cgroups() -> _Cgroups | None:
    if not _PROBED:
        _PROBED.append(_probe())
    return _PROBED[0]


def cgroup_support() -> dict[str, str | None]:
    """Which cgroup enforces memory and CPU share here (``cgroup-v1``, ``cgroup-v2``, None)."""
    groups = _cgroups()
    if groups is None:
        return {"memory": None, "cpus": None}
    name = f"cgroup-v{groups.version}"
    return {"memory": name if groups.memory else None, "cpus": name if groups.cpu else None}


class AppliedLimits:
    """One instance's limits made real: its cgroup directories (made by :meth:`create`,
    removed by :meth:`close`), the command prefix that applies them to a child, and the
    verdict on an exit."""

    def __init__(self, limits: ResourceLimits, name: str, *, backend: str) -> None:
        self.limits = limits
        self._name = name
        self._backend = backend
        self._dirs: dict[str, Path] = {}
        self._oom_seen = 0

    def create(self) -> None:
        """Make the cgroups and write their limits.

        Raises:
            OSError: the limits need a cgroup and none is writable here.
        """
        limits = self.limits
        if not limits.needs_cgroup:
            return
        groups = _cgroups()
        if groups is None:
            raise OSError(errno.EPERM, "no writable cgroup (memory and cpu limits need one)")
        if limits.memory_mb is not None:
            if groups.memory is None:
                raise OSError(errno.EPERM, "no writable memory cgroup")
            folder = self._make(groups.memory, "memory")
            limit = str(limits.memory_mb << 20)
            if groups.version == 1:
                (folder / "memory.limit_in_bytes").write_text(limit)
            else:
                (folder / "memory.max").write_text(limit)
                (folder / "memory.swap.max").write_text("0")
        if limits.cpus is not None:
            if groups.cpu is None:
                raise OSError(errno.EPERM, "no writable cpu cgroup")
            folder = self._make(groups.cpu, "cpu")
            quota = max(1000, int(limits.cpus * _PERIOD_US))
            if groups.version == 1:
                (folder / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
                (folder / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (folder / "cpu.max").write_text(f"{quota} {_PERIOD_US}")

    def _make(self, base: Path, controller: str) -> Path:
        folder = base / f"virtrio-{self._name}"
        for existing in self._dirs.values():  # v2: one directory for both controllers
            if existing == folder:
                return folder
        folder.mkdir(exist_ok=True)
        self._dirs[controller] = folder
        return folder

    @property
    def cgroup_dirs(self) -> dict[str, Path]:
        """The instance's cgroup directory per controller (``memory``, ``cpu``)."""
        return dict(self._dirs)

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the cgroups and under ``RLIMIT_CPU`` (every step execs: the
        emulator keeps the child's pid)."""
        out = list(argv)
        seconds = self.limits.cpu_time_s
        if seconds is not None:
            prlimit = shutil.which("prlimit") or "prlimit"
            soft = max(1, int(seconds + 0.999))
            # SIGXCPU at the soft limit (QEMU leaves it at its default: the process ends),
            # SIGKILL one second later should anything catch it
            out = [prlimit, f"--cpu={soft}:{soft + 1}", "--", *out]
        procs = sorted({str(d / "cgroup.procs") for d in self._dirs.values()})
        if procs:
            script = " && ".join(f"echo $$ > {shlex.quote(p)}" for p in procs)
            out = ["sh", "-c", f'{script} && exec "$@"', "sh", *out]
        return out

    def _oom_kills(self) -> int:
        folder = self._dirs.get("memory")
        if folder is None:
            return 0
        name = "memory.oom_control" if (folder / "memory.oom_control").exists() else "memory.events"
        try:
            text = (folder / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def verdict(self, returncode: int | None) -> ResourceLimitExceededError | None:
        """Why the emulator exited with ``returncode``, if a limit killed it."""
        limits = self.limits
        if returncode is None:
            return None
        kills = self._oom_kills()
        if kills > self._oom_seen and returncode == -signal.SIGKILL and limits.memory_mb:
            self._oom_seen = kills
            return ResourceLimitExceededError(
                "memory",
                limits.memory_mb,
                f"killed: it exceeded its memory limit of {limits.memory_mb} MiB",
                backend=self._backend,
            )
        if returncode == -signal.SIGXCPU and limits.cpu_time_s is not None:
            return ResourceLimitExceededError(
                "cpu_time",
                limits.cpu_time_s,
                f"killed: it used its CPU time limit of {limits.cpu_time_s} s",
                backend=self._backend,
            )
        return None

    def close(self) -> None:
        """Remove the cgroups (once the emulator is reaped)."""
        for folder in set(self._dirs.values()):
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._dirs.clear()


def remove_stale_cgroups() -> list[Path]:
    """Remove the instance cgroups of servers that died without closing them (a SIGKILL:
    their QEMU died with them, the empty directories stayed); returns those removed. A
    directory is stale when the server pid in its name (``virtrio-<instance>-<pid>``) is
    gone; one that still has processes is never removed (the kernel refuses)."""
    groups = _cgroups()
    removed: list[Path] = []
    if groups is None:
        return removed
    for base in {b for b in (groups.memory, groups.cpu) if b is not None}:
        for folder in base.glob("virtrio-*-*"):
            pid = folder.name.rpartition("-")[2]
            if not pid.isdigit() or Path(f"/proc/{pid}").exists():
                continue
            with contextlib.suppress(OSError):
                folder.rmdir()
                removed.append(folder)
    return removed
