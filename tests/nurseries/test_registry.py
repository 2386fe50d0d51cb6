"""The channel-kind registry: built-in kinds, an installed distribution's kind, loud conflicts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from virtrio.channels import open_listeners
from virtrio.engine.config import FleetError, parse_fleet
from virtrio.errors import ConfigError
from virtrio.nurseries import (
    BUILTIN_KINDS,
    DuplicateKindError,
    KindRegistry,
    UnknownKindError,
    default_registry,
    open_vm,
)
from virtrio.nurseries._kinds import QmpOptions

KIND_MODULE = '''
"""A third-party channel kind: a recorded line channel under its own name."""
import attrs
from virtrio.nurseries import ChannelKind, SerialConsoleOptions
from virtrio.nurseries._kinds import _build_console

@attrs.frozen
class TapOptions:
    address: str
    retention: int = 1024

def build(ctx, options):
    return _build_console(ctx, SerialConsoleOptions(address=options.address,
                                                    retention=options.retention))

KIND = ChannelKind("tap", TapOptions, build, "a tap")
QMP_AGAIN = ChannelKind("qmp", TapOptions, build, "a second qmp")
'''


def install_distribution(root: Path, name: str, entry_points: dict[str, str]) -> None:
    """A real installed distribution: a package and its dist-info on a sys.path entry."""
    package = root / "virtrio_tap"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(KIND_MODULE)
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[virtrio.channels]\n{lines}\n")
    (info / "RECORD").write_text("")


def test_the_builtin_kinds_are_registered() -> None:
    names = default_registry().names()
    for kind in ("qmp", "qga", "spice", "virtio-serial", "serial-console", "mux"):
        assert kind in names
    with pytest.raises(UnknownKindError, match=r"unknown channel kind 'serail' \(known: .*mux"):
        default_registry().get("serail")


def test_a_duplicate_name_fails_loudly() -> None:
    registry = KindRegistry(BUILTIN_KINDS)
    with pytest.raises(DuplicateKindError, match="'qmp' registered twice: by virtrio and by"):
        registry.register(BUILTIN_KINDS[0])


async def test_an_installed_distribution_adds_a_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(tmp_path, "virtrio-tap", {"tap": "virtrio_tap:KIND"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = KindRegistry(BUILTIN_KINDS)
    registry.load_entry_points()
    assert registry.get("tap").distribution == "virtrio-tap"

    socket_path = tmp_path / "tap.sock"
    fleet = parse_fleet(
        textwrap.dedent(f"""\
            vms:
              - id: t
                qemu: {{machine: none, kernel: /k}}
                channels:
                  wire: {{kind: tap, address: "unix:{socket_path}"}}
        """),
        registry=registry,
    )
    channel = fleet.vms[0].channels["wire"]
    assert channel.kind == "tap"
    listeners = await open_listeners(f"unix:{socket_path}")
    async with open_vm("t", channels={"wire": channel}, registry=registry) as vm:
        peer = await listeners[0].accept()
        mark = vm.line("wire").mark()
        await peer.send_all(b"from the tap\n")
        assert (await vm.line("wire").expect("tap", after=mark, timeout=5)).text == "tap"
        assert vm.channel_kinds() == {"wire": "tap"}
        await peer.aclose()
    for listener in listeners:
        await listener.aclose()


def test_an_installed_kind_reusing_a_builtin_name_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(tmp_path, "virtrio-impostor", {"qmp": "virtrio_tap:QMP_AGAIN"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = KindRegistry(BUILTIN_KINDS)
    with pytest.raises(
        DuplicateKindError, match="'qmp' registered twice: by virtrio and by virtrio-impostor"
    ):
        registry.load_entry_points()


def test_a_broken_entry_point_names_its_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(tmp_path, "virtrio-broken", {"gone": "virtrio_tap:NOT_THERE"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="'gone' of virtrio-broken does not load"):
        KindRegistry().load_entry_points()


def test_a_kind_whose_module_is_missing_says_what_to_install() -> None:
    import attrs

    kind = attrs.evolve(
        BUILTIN_KINDS[0], name="fancy", requires=("virtrio_no_such_module",), extra="fancy"
    )
    registry = KindRegistry([*BUILTIN_KINDS, kind])
    text = "vms:\n  - id: a\n    qemu: {template: demo}\n    channels:\n      f: {kind: fancy}\n"
    with pytest.raises(FleetError) as caught:
        parse_fleet(text, source="f.yaml", registry=registry)
    assert str(caught.value) == (
        "f.yaml:5: vms[0].channels.f.kind: channel kind 'fancy' needs the module "
        "'virtrio_no_such_module': pip install 'virtrio[fancy]'"
    )


def test_a_known_kind_not_installed_names_its_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "vms:\n  - id: a\n    qemu: {template: demo}\n    channels:\n      t: {kind: tap}\n"
    registry = KindRegistry(BUILTIN_KINDS, known={"tap": "virtrio-tap"})
    registry.load_entry_points()
    with pytest.raises(FleetError) as caught:
        parse_fleet(text, source="f.yaml", registry=registry)
    assert str(caught.value) == (
        "f.yaml:5: vms[0].channels.t.kind: channel kind 'tap' is not installed: it is provided "
        "by the distribution 'virtrio-tap' (pip install 'virtrio-tap')"
    )
    with pytest.raises(UnknownKindError, match=r"pip install 'virtrio-tap'"):
        registry.get("tap")
    # installed for real, the same name is just a kind
    install_distribution(tmp_path, "virtrio-tap", {"tap": "virtrio_tap:KIND"})
    monkeypatch.syspath_prepend(str(tmp_path))
    installed = KindRegistry(BUILTIN_KINDS, known={"tap": "virtrio-tap"})
    installed.load_entry_points()
    assert installed.get("tap").distribution == "virtrio-tap"
    # a kind nobody knows says how third-party kinds are installed
    with pytest.raises(UnknownKindError, match=r"entry-point group 'virtrio.channels'"):
        installed.get("nosuch")


async def test_open_vm_rejects_a_bad_spec_before_starting() -> None:
    with pytest.raises(UnknownKindError, match="'serail'"):
        async with open_vm("t", channels={"c": {"kind": "serail"}}):
            pass
    with pytest.raises(ConfigError, match=r"channel c \(qmp\): .*unexpected keyword"):
        async with open_vm("t", channels={"c": {"kind": "qmp", "adress": "unix:/x"}}):
            pass
    with pytest.raises(ConfigError, match="needs a QMP address"):
        async with open_vm("t", channels={"c": {"kind": "qmp"}}):
            pass
    assert QmpOptions().address is None
