"""A real Spice server: QEMU (SeaBIOS on VGA) with ``-spice unix=on``, optional password, TLS
port and extra channel devices; a QMP socket for screendump/stop; websockify on demand."""

from __future__ import annotations

import datetime
import json
import os
import socket
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.peers import dies_with_tests, require_program, stop_process

__all__ = ["SpiceVM", "decode_png_rgb"]

#: Devices that add usbredir, playback, record and port channels (peers.md §4), with SeaBIOS's
#: console mirrored to the spiceport ``org.virtrio.serial0`` through COM1.
ALL_CHANNEL_DEVICES = (
    "-device", "qemu-xhci",
    "-chardev", "spicevmc,name=usbredir,id=usbr", "-device", "usb-redir,chardev=usbr",
    "-audiodev", "spice,id=snd0", "-device", "intel-hda", "-device", "hda-duplex,audiodev=snd0",
    "-chardev", "spiceport,id=sp0,name=org.virtrio.serial0", "-serial", "chardev:sp0",
)  # fmt: skip


@attrs.define
class SpiceVM:
    """A running QEMU with Spice on a Unix socket."""

    proc: subprocess.Popen[bytes]
    spice_path: Path
    qmp_path: Path
    password: str
    tls_port: int | None = None
    ca_file: Path | None = None
    tcp_port: int | None = None

    @property
    def address(self) -> str:
        """The Spice address for virtrio."""
        return f"unix:{self.spice_path}"

    def qmp(self, command: str, **arguments: object) -> object:
        """Run one QMP command (a fresh connection per call; blocking)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.qmp_path))
            f = sock.makefile("rwb")
            f.readline()
            for cmd in (
                {"execute": "qmp_capabilities"},
                {"execute": command, "arguments": arguments},
            ):
                f.write(json.dumps(cmd).encode() + b"\n")
                f.flush()
                while True:
                    reply = json.loads(f.readline())
                    if "return" in reply or "error" in reply:
                        break
            if "error" in reply:
                raise RuntimeError(reply["error"])
            return reply["return"]

    def screendump_rgb(self, path: Path) -> tuple[int, int, bytes]:
        """QEMU's own screendump (PNG) decoded to (width, height, RGB bytes)."""
        self.qmp("screendump", filename=str(path), format="png")
        return decode_png_rgb(path.read_bytes())


def decode_png_rgb(data: bytes) -> tuple[int, int, bytes]:
    """Decode an 8-bit RGB or RGBA non-interlaced PNG to RGB bytes (test helper, no Pillow)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, ctype = 8, b"", 0, 0, 2
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8
            assert ctype in (2, 6)
            assert interlace == 0
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = bytearray()
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        prev = line
        if bpp == 4:
            out += b"".join(bytes(line[i : i + 3]) for i in range(0, stride, 4))
        else:
            out += line
    return width, height, bytes(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_certs(directory: Path) -> Path:
    """CA + server cert for 127.0.0.1 in QEMU's x509-dir layout; returns the CA file."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "virtrio test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca-cert.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server-cert.pem").write_bytes(cert.public_bytes(pem))
    (directory / "server-key.pem").write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return directory / "ca-cert.pem"


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            log = (path.parent / "qemu.log").read_text(errors="replace")
            raise RuntimeError(f"QEMU exited with {proc.returncode}: {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"QEMU did not create {path}")
        time.sleep(0.02)


@pytest.fixture
def spice_vm_factory(tmp_path: Path) -> Iterator[object]:
    """``start(password="", all_channels=False, tls=False, tls_channels=(), paused=False) ->
    SpiceVM``; with ``tls`` the VM listens on loopback (a plain and a TLS port) instead of a
    Unix socket; with ``paused`` the CPU waits (``-S``) for a QMP ``cont``; ``extra_args`` go
    to QEMU as they are."""
    qemu = require_program("qemu-system-x86_64", "qemu-system-x86")
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        *,
        password: str = "",
        all_channels: bool = False,
        tls: bool = False,
        tls_channels: tuple[str, ...] = (),
        paused: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> SpiceVM:
        d = tmp_path / f"vm{len(procs)}"
        d.mkdir()
        spice = [f"unix=on,addr={d}/spice.sock,image-compression=off"]
        args = [qemu, "-machine", "pc", "-accel", "tcg", "-m", "64", "-nodefaults"]
        args += ["-display", "none", "-device", "VGA", "-boot", "menu=on,splash-time=60000"]
        args += ["-qmp", f"unix:{d}/qmp.sock,server=on,wait=off"]
        if paused:
            args.append("-S")
        if password:
            args += ["-object", f"secret,id=spicepw,data={password}"]
            spice.append("password-secret=spicepw")
        else:
            spice.append("disable-ticketing=on")
        tls_port = tcp_port = None
        ca = None
        if tls:
            ca = _make_certs(d)
            tls_port, tcp_port = _free_port(), _free_port()
            # unix=on excludes TCP ports: a TLS VM listens on loopback (plain port for websockify)
            spice[0] = spice[0].replace(
                f"unix=on,addr={d}/spice.sock",
                f"addr=127.0.0.1,port={tcp_port},tls-port={tls_port},x509-dir={d}",
            )
            spice += [f"tls-channel={name}" for name in tls_channels]
        if all_channels:
            (d / "sercon").write_bytes(struct.pack("<H", 0x3F8))
            args += list(ALL_CHANNEL_DEVICES)
            args += ["-fw_cfg", f"name=etc/sercon-port,file={d}/sercon"]
        args += [*extra_args, "-spice", ",".join(spice)]
        env = dict(os.environ, SPICE_DEBUG_ALLOW_MC="1")
        with open(d / "qemu.log", "wb") as log:
            proc = subprocess.Popen(
                dies_with_tests(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        procs.append(proc)
        _wait_for(d / "qmp.sock", proc)
        if tls_port is not None:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", tls_port), 0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        else:
            _wait_for(d / "spice.sock", proc)
        return SpiceVM(proc, d / "spice.sock", d / "qmp.sock", password, tls_port, ca, tcp_port)

    yield start
    for proc in procs:
        stop_process(proc)


@pytest.fixture
def spice_vm(spice_vm_factory: object) -> SpiceVM:
    """A VM with Spice on a Unix socket, no password, SeaBIOS boot menu prompt."""
    return spice_vm_factory()  # type: ignore[operator,no-any-return]


@pytest.fixture
def websockify() -> Iterator[object]:
    """``start(target_host, target_port) -> ws:// URL`` (websockify, stopped afterwards)."""
    program = require_program("websockify", "websockify")
    procs: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        port = _free_port()
        proc = subprocess.Popen(
            dies_with_tests([program, f"127.0.0.1:{port}", target]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return f"ws://127.0.0.1:{port}/"
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    yield start
    for proc in procs:
        stop_process(proc)
