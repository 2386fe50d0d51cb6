"""Target descriptions: QEMU's XML (undeclared xi prefix, includes), regnums, groups, the g
packet's layout; garbage gives a protocol error."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from virtrio.channels.gdb import GdbProtocolError, Register, TargetDescriptionReader
from virtrio.channels.gdb._decoder import compile_decoder
from virtrio.channels.gdb._target import Byteorder

# as QEMU 7.2 sends them (target.xml names no xmlns:xi)
TARGET = (
    b'<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target>'
    b"<architecture>arm</architecture>"
    b'<xi:include href="arm-m-profile.xml"/><xi:include href="system-registers.xml"/></target>'
)
M_PROFILE = b"""<?xml version="1.0"?>
<!DOCTYPE feature SYSTEM "gdb-target.dtd">
<feature name="org.gnu.gdb.arm.m-profile">
  <reg name="r0" bitsize="32"/>
  <reg name="r1" bitsize="32"/>
  <reg name="sp" bitsize="32" type="data_ptr"/>
  <reg name="pc" bitsize="32" type="code_ptr"/>
  <reg name="xpsr" bitsize="32" regnum="25"/>
</feature>"""
SYSTEM = b"""<feature name="org.qemu.gdb.arm.sys.regs">
  <vector id="v2" type="uint32" count="2"/>
  <reg name="basepri" bitsize="32" group="system"/>
  <reg name="d0" bitsize="64" type="ieee_double"/>
  <reg name="q0" bitsize="64" type="v2"/>
</feature>"""


def read(documents: dict[str, bytes]) -> TargetDescriptionReader:
    reader = TargetDescriptionReader()
    while (annex := reader.next_annex()) is not None:
        if annex not in documents:
            raise KeyError(annex)
        reader.add(annex, documents[annex])
    return reader


def test_qemu_style_description() -> None:
    reader = TargetDescriptionReader()
    assert reader.next_annex() == "target.xml"
    reader.add("target.xml", TARGET)
    assert reader.next_annex() == "arm-m-profile.xml"
    reader.add("arm-m-profile.xml", M_PROFILE)
    assert reader.next_annex() == "system-registers.xml"
    reader.add("system-registers.xml", SYSTEM)
    assert reader.next_annex() is None
    target = reader.build()
    assert target.architecture == "arm"
    assert target.byteorder == "little"
    assert target.features == ("org.gnu.gdb.arm.m-profile", "org.qemu.gdb.arm.sys.regs")
    summary = [(r.name, r.regnum, r.offset, r.group) for r in target.registers]
    assert summary == [
        ("r0", 0, 0, "general"),
        ("r1", 1, 4, "general"),
        ("sp", 2, 8, "general"),
        ("pc", 3, 12, "general"),
        ("xpsr", 25, 16, "general"),  # an explicit regnum; the next ones follow it
        ("basepri", 26, 20, "system"),
        ("d0", 27, 24, "float"),
        ("q0", 28, 32, "vector"),
    ]
    assert target.register("pc").type == "code_ptr"
    with pytest.raises(KeyError, match="no register 'rip'"):
        target.register("rip")
    g = bytes(range(20))  # a g packet with only the first five registers
    assert target.decode_registers(g) == {
        "r0": 0x03020100, "r1": 0x07060504, "sp": 0x0B0A0908, "pc": 0x0F0E0D0C, "xpsr": 0x13121110
    }  # fmt: skip


def test_big_endian_architectures() -> None:
    xml = (
        b"<target><architecture>s390:64-bit</architecture>"
        b'<feature name="f"><reg name="pswa" bitsize="64"/></feature></target>'
    )
    reader = read({"target.xml": xml})
    target = reader.build()
    assert target.byteorder == "big"
    assert target.decode_registers(b"\x00" * 7 + b"\x01") == {"pswa": 1}
    assert target.encode_value(target.register("pswa"), 1) == b"\x00" * 7 + b"\x01"


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ({"target.xml": b"<target><reg"}, "not valid XML"),
        ({"target.xml": b'<target><xi:include href="target.xml"/></target>'}, "includes itself"),
        ({"target.xml": b'<target><feature name="f"><reg bitsize="8"/></feature></target>'},
         "without a name"),
        ({"target.xml": b'<target><reg name="a" bitsize="x"/></target>'}, "not a number"),
        ({"target.xml": b'<target><reg name="a"/></target>'}, "no bitsize"),
        ({"target.xml": b'<target><reg name="a" bitsize="8"/><reg name="b" bitsize="8" '
                        b'regnum="0"/></target>'}, "twice"),
        ({"target.xml": b"<target><xi:include/></target>"}, "without href"),
    ],
)  # fmt: skip
def test_bad_descriptions(documents: dict[str, bytes], message: str) -> None:
    with pytest.raises(GdbProtocolError, match=message):
        read(documents).build()


def test_a_document_that_was_never_added() -> None:
    reader = TargetDescriptionReader()
    with pytest.raises(GdbProtocolError, match="not fetched"):
        reader.build()


# every way _decoder reads a register: a struct field (8..64), fields put together (odd sizes
# up to 16 bytes: x87's 80 bits, SSE's 128), bytes (wider: AVX-512, SVE), bit sizes in between
registers = st.lists(
    st.tuples(
        st.sampled_from([1, 8, 12, 16, 24, 32, 40, 48, 56, 64, 72, 80, 96, 120, 128, 256, 512]),
        st.booleans(),
    ),
    min_size=1,
    max_size=20,
)


@given(registers, st.sampled_from(["little", "big"]), st.data())
def test_encode_decode_round_trip(
    specs: list[tuple[int, bool]], byteorder: Byteorder, data: st.DataObject
) -> None:
    body = "".join(f'<reg name="r{i}" bitsize="{bits}"/>' for i, (bits, _) in enumerate(specs))
    xml = f'<target><feature name="f">{body}</feature></target>'.encode()
    reader = TargetDescriptionReader(byteorder=byteorder)
    reader.add("target.xml", xml)
    description = reader.build()
    values = {r.name: data.draw(st.integers(0, 2**r.bitsize - 1)) for r in description.registers}
    g = b"".join(description.encode_value(r, values[r.name]) for r in description.registers)
    decoded = description.decode_registers(g)
    assert decoded == values
    assert list(decoded) == [r.name for r in description.registers]  # in register order
    # a shorter packet (a stub that sends fewer registers) holds the registers it covers whole,
    # each read as the one-by-one decoding would read it
    cut = data.draw(st.integers(0, len(g)))
    covered = [r for r in description.registers if r.offset + r.size <= cut]  # a prefix
    expected = {r.name: int.from_bytes(g[r.offset : r.offset + r.size], byteorder) for r in covered}
    assert description.decode_registers(g[:cut]) == expected
    assert description.decode_registers(g) is not description.decode_registers(g)
    assert all(isinstance(r, Register) for r in description.registers)


@given(st.binary(max_size=200))
def test_garbage_gives_a_protocol_error(garbage: bytes) -> None:
    reader = TargetDescriptionReader()
    try:
        reader.add("target.xml", garbage)
        while (annex := reader.next_annex()) is not None:
            reader.add(annex, garbage)
        reader.build()
    except GdbProtocolError:
        pass


@given(
    st.lists(st.text(max_size=12), min_size=1, max_size=8, unique=True),
    st.sampled_from(["little", "big"]),
    st.data(),
)
def test_decoding_takes_any_register_name_as_a_name(
    names: list[str], byteorder: Byteorder, data: st.DataObject
) -> None:
    # the names come from the stub and go into the compiled decoder's source only as literals
    regs = [Register(name, 16, i, offset=2 * i) for i, name in enumerate(names)]
    values = [data.draw(st.integers(0, 0xFFFF)) for _ in regs]
    g = b"".join(v.to_bytes(2, byteorder) for v in values)
    assert compile_decoder(regs, byteorder)(g) == dict(zip(names, values, strict=True))
