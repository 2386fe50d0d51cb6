"""A real libvirt daemon for the tests: virtlogd + libvirtd in the foreground, all in a temp dir.

The daemon runs as ``nobody`` in session mode with its own ``XDG_*`` directories under a fresh
``/tmp/vtlv-*`` directory, so its sockets, run state, logs and domain channels never clash with
a system libvirtd or another test run; the tests reach it as
``qemu+unix:///session?socket=<dir>/run/libvirt/libvirt-sock``. Only the QEMU capabilities cache
is shared between runs (``/var/tmp/virtrio-libvirtd-cache``): probing QEMU costs ~8 s cold.

Both daemons are children of the test process (PID 1 here does not reap orphans) and are always
stopped and reaped. ``libvirt_guest`` boots the demo guest once per test module.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests import leaks
from tests.peers import dies_with_tests, require_program, stop_process

__all__ = ["LibvirtDaemon", "LibvirtGuest", "domain_xml", "qemu_processes"]

CACHE_DIR = Path("/var/tmp/virtrio-libvirtd-cache")
USER = "nobody"
GROUP = "nogroup"


def _chown(path: Path) -> None:
    shutil.chown(path, USER, GROUP)


@attrs.define
class LibvirtDaemon:
    """A running virtlogd + libvirtd pair; :meth:`restart_libvirtd` for reconnect tests."""

    root: Path
    libvirtd: str
    virtlogd: str
    procs: dict[str, subprocess.Popen[bytes]] = attrs.field(factory=dict)

    @property
    def socket(self) -> Path:
        """The daemon's Unix socket."""
        return self.root / "run" / "libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        """The URI to reach it."""
        return f"qemu+unix:///session?socket={self.socket}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.root / "home"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_CACHE_HOME": str(CACHE_DIR),
            "XDG_DATA_HOME": str(self.root / "data"),
        }

    def _spawn(self, name: str, program: str) -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            dies_with_tests([program]),
            env=self.env,
            user=USER,
            group=GROUP,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=self.root,
        )
        log.close()
        leaks.adopt(self.procs[name].pid)  # the session's daemon, whichever test restarts it

    def _wait_socket(self, path: Path, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            proc = self.procs[name]
            if proc.poll() is not None:
                log = (self.root / f"{name}.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"{name} exited with {proc.returncode}:\n{log}")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not create {path} within {timeout} s")
            time.sleep(0.02)

    def start(self) -> None:
        """Start virtlogd, then libvirtd; return once libvirtd accepts connections."""
        if "virtlogd" not in self.procs or self.procs["virtlogd"].poll() is not None:
            self._spawn("virtlogd", self.virtlogd)
            self._wait_socket(self.root / "run" / "libvirt" / "virtlogd-sock", "virtlogd")
        self.start_libvirtd()

    def start_libvirtd(self) -> None:
        """Start libvirtd alone (virtlogd must be running)."""
        self.socket.unlink(missing_ok=True)
        self._spawn("libvirtd", self.libvirtd)
        self._wait_socket(self.socket, "libvirtd")

    def stop_libvirtd(self) -> None:
        """Stop libvirtd (domains keep running; a new libvirtd picks them up)."""
        proc = self.procs.pop("libvirtd", None)
        if proc is not None:
            stop_process(proc, grace=10)

    def restart_libvirtd(self) -> None:
        """Stop and start libvirtd."""
        self.stop_libvirtd()
        self.start_libvirtd()

    @classmethod
    def create(cls) -> LibvirtDaemon:
        """A daemon (not started) with its private directories made under a new temp dir."""
        daemon = cls(
            Path(tempfile.mkdtemp(prefix="vtlv-", dir="/tmp")),
            require_program("libvirtd", "libvirt-daemon"),
            require_program("virtlogd", "libvirt-daemon"),
        )
        for sub in ("home", "run", "config", "data"):
            (daemon.root / sub).mkdir(mode=0o700)
            _chown(daemon.root / sub)
        daemon.root.chmod(0o755)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        _chown(CACHE_DIR)
        return daemon

    def stop(self) -> None:
        """Stop both daemons and reap them."""
        for name in ("libvirtd", "virtlogd"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process(proc, grace=10)


def qemu_processes(marker: str) -> list[int]:
    """PIDs of QEMU processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline and marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def no_libvirt_leftovers() -> Iterator[None]:
    """After the test: nothing registered in the libvirt event loop.

    libvirt keeps a connection open while any of its domain objects lives; a test's objects
    (some held by tracebacks in reference cycles) are collected first.
    """
    from virtrio.channels.libvirt import event_loop_stats

    yield
    gc.collect()
    stats = event_loop_stats()
    assert (stats.handles, stats.timers, stats.pending_frees) == (0, 0, 0), stats


def _initialise_libvirt(daemon: LibvirtDaemon) -> None:
    """Connect once through virtrio, so libvirt's process-wide state (made on first use and
    kept for the life of the process: an eventfd and a socket) exists before any test takes
    its leak snapshot."""
    import trio

    from virtrio.nurseries.host import open_host

    async def connect() -> None:
        async with open_host(daemon.uri) as host:
            await host.connection(30)

    trio.run(connect)
    gc.collect()


@pytest.fixture(scope="session")
def libvirtd() -> Iterator[LibvirtDaemon]:
    """A private libvirt daemon for the whole session (see the module docstring)."""
    require_program("qemu-system-x86_64", "qemu-system-x86")
    daemon = LibvirtDaemon.create()
    try:
        daemon.start()
        _initialise_libvirt(daemon)
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(daemon.root, ignore_errors=True)


@attrs.frozen
class LibvirtGuest:
    """The demo guest booted under :func:`libvirtd` (agent answering)."""

    daemon: LibvirtDaemon
    name: str
    #: the extra QMP socket given on the QEMU command line (for discovery tests)
    qmp_socket: Path


def domain_xml(
    name: str, kernel: Path, initrd: Path, cmdline: str, *, qmp_socket: Path | None = None
) -> str:
    """A TCG domain booting the demo guest: agent + two echo channels, Spice on loopback, a
    serial console (the guest runs a shell on it)."""
    extra = ""
    if qmp_socket is not None:
        extra = (
            "<qemu:commandline><qemu:arg value='-qmp'/>"
            f"<qemu:arg value='unix:{qmp_socket},server=on,wait=off'/></qemu:commandline>"
        )
    channels = "".join(
        f"<channel type='unix'><source mode='bind'/><target type='virtio' name='{port}'/></channel>"
        for port in ("org.qemu.guest_agent.0", "org.virtrio.echo0", "org.virtrio.echo1")
    )
    return f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name><uuid>{uuid.uuid4()}</uuid>
  <memory unit='MiB'>128</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel><initrd>{initrd}</initrd><cmdline>{cmdline}</cmdline></os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <controller type='virtio-serial'/>
    {channels}
    <graphics type='spice' autoport='yes' listen='127.0.0.1'><image compression='off'/></graphics>
    <video><model type='vga'/></video>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
  {extra}
</domain>"""


def _guest_files(daemon: LibvirtDaemon) -> tuple[Path, Path, str]:
    from virtrio.engine.guest import build_guest, find_guest

    image = find_guest() or build_guest()
    folder = daemon.root / "guest"
    if not folder.exists():
        folder.mkdir()
        shutil.copy(image.kernel, folder / "vmlinux")
        shutil.copy(image.initrd, folder / "initrd.cpio")
        for path in (folder, folder / "vmlinux", folder / "initrd.cpio"):
            _chown(path)
    return folder / "vmlinux", folder / "initrd.cpio", image.cmdline


def define_guest(daemon: LibvirtDaemon, name: str, *, qmp_socket: Path | None = None) -> str:
    """The XML of a demo-guest domain named ``name`` on ``daemon``."""
    kernel, initrd, cmdline = _guest_files(daemon)
    return domain_xml(name, kernel, initrd, cmdline, qmp_socket=qmp_socket)


@pytest.fixture(scope="module")
def libvirt_guest(libvirtd: LibvirtDaemon) -> Iterator[LibvirtGuest]:
    """The demo guest booted (TCG, ~6.5-9 s) once per module, its agent answering."""
    import libvirt
    import libvirt_qemu

    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    name = f"vt-{uuid.uuid4().hex[:8]}"
    qmp_socket = libvirtd.root / "home" / f"{name}-qmp.sock"
    # the fixture's own connections are closed before the tests run: tests check that nothing
    # stays registered in the libvirt event loop
    conn = libvirt.open(libvirtd.uri)
    try:
        dom = conn.createXML(define_guest(libvirtd, name, qmp_socket=qmp_socket), 0)
        deadline = time.monotonic() + 60
        while True:
            try:
                libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-ping"}', 2, 0)
                break
            except libvirt.libvirtError:
                if time.monotonic() > deadline:
                    dom.destroy()
                    pytest.fail("the demo guest's agent did not answer within 60 s")
                time.sleep(0.25)
        del dom
    finally:
        conn.close()
    try:
        yield LibvirtGuest(libvirtd, name, qmp_socket)
    finally:
        conn = libvirt.open(libvirtd.uri)  # the daemon may have been restarted meanwhile
        try:
            with contextlib.suppress(libvirt.libvirtError):
                conn.lookupByName(name).destroy()
        finally:
            conn.close()
        deadline = time.monotonic() + 10
        while qemu_processes(f"guest={name}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert qemu_processes(f"guest={name}") == [], f"QEMU of {name} still running"
