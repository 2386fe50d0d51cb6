"""The demo guest: a tiny real Linux that runs qemu-ga, built from Debian packages only.

It is the Debian kernel, a busybox initramfs and the host's qemu-ga with its shared libraries,
started by ``init`` on the virtio-serial port ``org.qemu.guest_agent.0``; every port named
``org.virtrio.echo*`` echoes what it receives, hashicorp's yamux (the Go test peer, statically
linked) serves echo streams on ``org.virtrio.mux0``, the ACPI power button (QMP
``system_powerdown``) powers it off, and the serial console runs a shell. The
kernel is stored inflated (the ELF ``vmlinux``, booted through its PVH entry) and the initramfs
uncompressed, so the guest decompresses nothing: under TCG it boots to a responding agent on
about 2.6 s of QEMU CPU (6.3 s with the bzImage and a gzipped initramfs), 128 MiB of RAM.

The image is cached under ``$VIRTRIO_GUEST_DIR`` (default ``~/.cache/virtrio/guest``) in a
folder named by the hash of its inputs (kernel and busybox package versions, the qemu-ga binary
and libraries, the init scripts, this builder's format), so it is rebuilt only when one changes.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import attrs

from virtrio.errors import ConfigError, VirtrioError

__all__ = [
    "GuestBuildError",
    "GuestImage",
    "build_guest",
    "find_guest",
    "guest_cache_dir",
    "require_guest",
]

_FORMAT = 5  # bump when the image layout changes
_QEMU_GA = Path("/usr/sbin/qemu-ga")
_GOPATH = "/usr/share/gocode"
_YAMUX_LIBRARY = f"{_GOPATH}/src/github.com/hashicorp/yamux"
_APPLETS = (
    "sh mount mkdir ls cat echo sleep insmod ln poweroff reboot id uname ps dmesg hostname true "
    "false grep head readlink basename setsid stty tr wc env kill seq dd sync uptime"
).split()
_MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/char/virtio_console.ko",
    "drivers/input/evdev.ko",  # /dev/input/event*, for the power button
    "drivers/acpi/button.ko",  # the ACPI power button (QMP system_powerdown)
    "net/vmw_vsock/vsock.ko",
    "net/vmw_vsock/vmw_vsock_virtio_transport_common.ko",
    "net/vmw_vsock/vmw_vsock_virtio_transport.ko",
)
_OS_RELEASE = (
    'PRETTY_NAME="virtrio demo guest (busybox + qemu-ga)"\nNAME="virtrio-guest"\nID=virtrio\n'
)


class GuestBuildError(VirtrioError):
    """The demo guest could not be built (the message says which step and why)."""


@attrs.frozen
class GuestImage:
    """A built demo guest: boot it with ``-kernel``/``-initrd`` and :attr:`cmdline`."""

    kernel: Path
    initrd: Path
    #: The kernel release inside (``6.1.0-…-amd64``).
    kernel_release: str
    #: Besides the console: under TCG the kernel's boot-time checks are slow, so three are
    #: skipped (0.35-0.45 s of the 3.1 s boot here, ``benchmarks/guest_boot.py --printk``):
    #: the 100 ms APIC timer calibration (QEMU's APIC timer runs at 1 GHz, so a 250 Hz tick is
    #: 4,000,000 bus cycles; a guest ``sleep 2`` still takes 2.0 s), the W+X page-table walk
    #: that marking the kernel read-only brings (a throwaway test guest), and the crypto
    #: self-tests.
    cmdline: str = (
        "console=ttyS0 quiet panic=-1 lapic_timer_period=4000000 rodata=off cryptomgr.notests"
    )
    #: RAM it needs (64 MiB is too little for kernel + initramfs).
    memory_mib: int = 128


def guest_cache_dir() -> Path:
    """Where built images live (``$VIRTRIO_GUEST_DIR`` or ``~/.cache/virtrio/guest``)."""
    configured = os.environ.get("VIRTRIO_GUEST_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "virtrio" / "guest"


def _run(args: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise GuestBuildError(f"{what}: {args[0]} is not installed") from None
    if done.returncode != 0:
        raise GuestBuildError(f"{what}: {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _resolve_packages() -> dict[str, str]:
    """The versioned kernel package behind linux-image-amd64, and the versions to fetch."""

    def depends() -> str:
        return _run(["apt-cache", "depends", "linux-image-amd64"], "resolving the kernel package")

    try:
        text = depends()
    except GuestBuildError:
        _run(["apt-get", "update", "-q"], "refreshing the package lists")
        text = depends()
    kernel = next(
        (
            line.split()[1]
            for line in text.splitlines()
            if line.strip().startswith("Depends: linux-image-") and line.split()[1][12:13].isdigit()
        ),
        None,
    )
    if kernel is None:
        raise GuestBuildError("cannot resolve linux-image-amd64 to a kernel package")
    versions = {}
    for package in (kernel, "busybox-static"):
        policy = _run(["apt-cache", "policy", package], f"looking up {package}")
        candidate = next(
            (ln.split()[1] for ln in policy.splitlines() if ln.strip().startswith("Candidate:")), ""
        )
        if not candidate or candidate == "(none)":
            raise GuestBuildError(f"no installable version of {package} (run apt-get update)")
        versions[package] = candidate
    return versions


def _libraries(binary: Path) -> list[Path]:
    out = _run(["ldd", str(binary)], f"listing the libraries of {binary}")
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            libs.append(Path(parts[2]))
        elif parts and parts[0].startswith("/"):
            libs.append(Path(parts[0]))
    return libs


def _input_key(versions: dict[str, str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": _FORMAT, "packages": versions}, sort_keys=True).encode())
    for path in [_QEMU_GA, *_libraries(_QEMU_GA)]:
        digest.update(path.read_bytes())
    files = resources.files("virtrio.engine.guest_files")
    for name in ("init", "shutdown", "yamux_peer/main.go"):
        digest.update(files.joinpath(name).read_bytes())
    # the Go peer's toolchain and library
    digest.update(_run(["go", "version"], "the Go toolchain (apt-get install golang-go)").encode())
    for source in sorted(Path(_YAMUX_LIBRARY).glob("*.go")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def _build_go_peer(work: Path, dest: Path) -> None:
    """The Go yamux peer, statically linked (CGO_ENABLED=0) from Debian's golang packages."""
    if not Path(_YAMUX_LIBRARY).is_dir():
        raise GuestBuildError(
            f"{_YAMUX_LIBRARY} missing: apt-get install golang-github-hashicorp-yamux-dev"
        )
    source = work / "yamux_peer"
    source.mkdir()
    files = resources.files("virtrio.engine.guest_files")
    (source / "main.go").write_bytes(files.joinpath("yamux_peer/main.go").read_bytes())
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        "GO111MODULE": "off",
        "GOPATH": _GOPATH,
        "GOCACHE": str(work / "gocache"),
    }
    try:
        done = subprocess.run(
            ["go", "build", "-ldflags", "-s -w", "-o", str(dest), "."],
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise GuestBuildError("building the Go yamux peer: apt-get install golang-go") from None
    if done.returncode != 0:
        raise GuestBuildError(f"building the Go yamux peer failed: {done.stderr[-500:]}")


def _load(folder: Path) -> GuestImage | None:
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    image = GuestImage(folder / "vmlinux", folder / "initrd.cpio", data["kernel_release"])
    return image if image.kernel.exists() and image.initrd.exists() else None


def find_guest() -> GuestImage | None:
    """The newest image already built, without building (None if there is none)."""
    root = guest_cache_dir()
    if not root.is_dir():
        return None
    folders = sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for folder in folders:
        image = _load(folder)
        if image is not None:
            return image
    return None


def build_guest(*, force: bool = False, log: bool = False) -> GuestImage:
    """Build the demo guest if its inputs changed since the cached build; return it.

    Needs ``apt-get`` (to download the kernel and busybox packages), ``dpkg-deb``, ``cpio`` and
    qemu-ga installed on the host (its binary is copied into the image).

    Raises:
        GuestBuildError: a tool is missing or a step failed.
    """
    if not _QEMU_GA.exists():
        raise GuestBuildError(f"{_QEMU_GA} not found: apt-get install qemu-guest-agent")
    versions = _resolve_packages()
    folder = guest_cache_dir() / _input_key(versions)
    if not force and (cached := _load(folder)) is not None:
        if log:
            print(f"guest: cached at {folder}")
        return cached
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".build-") as tmp:
        work = Path(tmp)
        if log:
            print(f"guest: building in {work} from {versions}")
        release = _build(work, versions)
        staged = work / "out"
        (staged / "manifest.json").write_text(
            json.dumps({"kernel_release": release, "packages": versions, "format": _FORMAT})
        )
        if folder.exists():
            shutil.rmtree(folder)
        staged.rename(folder)
    image = _load(folder)
    assert image is not None
    if log:
        print(f"guest: built {image.kernel} and {image.initrd} (kernel {release})")
    return image


def _build(work: Path, versions: dict[str, str]) -> str:
    debs, root, out = work / "debs", work / "root", work / "out"
    for d in (debs, root, out):
        d.mkdir()
    specs = [f"{name}={version}" for name, version in versions.items()]
    _run(["apt-get", "download", "-q", *specs], "downloading the kernel and busybox", cwd=debs)
    for deb in debs.glob("*.deb"):
        target = debs / ("kernel" if deb.name.startswith("linux-image") else "busybox")
        _run(["dpkg-deb", "-x", str(deb), str(target)], f"unpacking {deb.name}")
    releases = sorted((debs / "kernel/lib/modules").iterdir())
    if not releases:
        raise GuestBuildError("the kernel package holds no modules")
    release = releases[0].name
    (out / "vmlinux").write_bytes(_decompress_kernel(debs / f"kernel/boot/vmlinuz-{release}"))

    for sub in (
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "etc",
        "lib/modules",
        "usr/sbin",
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(debs / "busybox/bin/busybox", root / "bin/busybox")
    for applet in _APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    order = []
    for module in _MODULES:
        shutil.copy(debs / f"kernel/lib/modules/{release}/kernel/{module}", root / "lib/modules")
        order.append(Path(module).name)
    (root / "lib/modules/order").write_text("\n".join(order) + "\n")
    shutil.copy(_QEMU_GA, root / "usr/sbin/qemu-ga")
    for lib in _libraries(_QEMU_GA):
        dest = root / lib.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, dest)  # follows symlinks: the real file under the linked name
    _build_go_peer(work, root / "usr/sbin/yamux_peer")
    (root / "etc/os-release").write_text(_OS_RELEASE)
    (root / "etc/hostname").write_text("virtrio-guest\n")
    files = resources.files("virtrio.engine.guest_files")
    for name, dest in (("init", root / "init"), ("shutdown", root / "sbin/shutdown")):
        dest.write_bytes(files.joinpath(name).read_bytes())
        dest.chmod(0o755)
    listing = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    cpio = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=listing, capture_output=True
    )
    if cpio.returncode != 0:
        raise GuestBuildError(f"cpio failed: {cpio.stderr.decode(errors='replace')[-300:]}")
    (out / "initrd.cpio").write_bytes(cpio.stdout)
    return release


_XZ_MAGIC = b"\xfd7zXZ\x00"


def _decompress_kernel(bzimage: Path) -> bytes:
    """The ELF ``vmlinux`` inside Debian's bzImage (xz-compressed), for a PVH boot.

    Under TCG the guest spends about 3 s of CPU inflating its own xz payload before it prints
    anything; inflated once here, QEMU loads the ELF straight to its PVH entry point.
    """
    data = bzimage.read_bytes()
    start = data.find(_XZ_MAGIC)
    while start >= 0:
        try:
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
        except lzma.LZMAError:
            elf = b""
        if elf.startswith(b"\x7fELF"):
            return elf
        start = data.find(_XZ_MAGIC, start + 1)
    raise GuestBuildError(f"{bzimage.name}: no xz-compressed ELF kernel inside")


def require_guest() -> GuestImage:
    """The built image, or a clear error saying how to build it."""
    image = find_guest()
    if image is None:
        raise ConfigError("the demo guest is not built: run `virtrio guest build` (or `make run`)")
    return image
