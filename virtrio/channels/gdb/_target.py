"""The target description: which registers a target has, read from the stub's XML.

The stub serves ``target.xml`` through ``qXfer:features:read``; it names the architecture and
includes feature documents (``<xi:include href="i386-64bit.xml"/>``) that list the registers.
:class:`TargetDescriptionReader` is the sans-I/O side of that exchange::

    reader = TargetDescriptionReader()
    while (annex := reader.next_annex()) is not None:
        reader.add(annex, fetch(annex))          # qXfer:features:read:ANNEX:...
    target = reader.build()
    target.registers_by_name["rip"].bitsize      # 64

QEMU writes ``xi:include`` without declaring the ``xi`` prefix (GDB's DTD supplies it), so the
XML is read without namespace processing: element names are taken as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal
from xml.parsers import expat

import attrs

from ._decoder import Decoder, compile_decoder
from ._errors import GdbProtocolError

__all__ = ["Register", "TargetDescription", "TargetDescriptionReader"]

Byteorder = Literal["little", "big"]

#: Architectures whose registers travel big-endian (prefixes of GDB's architecture names).
_BIG_ENDIAN = ("s390", "m68k", "sparc", "hppa", "or1k", "openrisc")
_FLOAT_TYPES = frozenset(
    {"ieee_half", "ieee_single", "ieee_double", "arm_fpa_ext", "i387_ext", "bfloat16", "float"}
)
#: Documents larger than this are refused (QEMU's biggest, aarch64 SVE, is ~100 KiB).
MAX_DOCUMENT = 4 << 20
MAX_DOCUMENTS = 64


@attrs.frozen
class Register:
    """One register of the target description.

    Attributes:
        name: its name (``"rip"``, ``"r0"``, ``"xPSR"``).
        bitsize: its width in bits.
        regnum: its number (the ``p``/``P`` packets' and stop replies' index).
        type: its GDB type (``"int"``, ``"code_ptr"``, ``"ieee_double"``, ``"vec128"``, ...).
        group: ``"general"``, ``"float"``, ``"vector"``, ``"system"``, ... as the description
            says, or derived from the type as GDB does.
        feature: the feature it belongs to (``"org.gnu.gdb.i386.core"``).
        offset: its byte offset in the ``g`` packet (registers in regnum order), if it is one
            of them.
    """

    name: str
    bitsize: int
    regnum: int
    type: str = "int"
    group: str = "general"
    feature: str = ""
    offset: int = 0

    @property
    def size(self) -> int:
        """Its width in bytes."""
        return (self.bitsize + 7) // 8


@attrs.frozen
class TargetDescription:
    """A target's architecture and registers (in regnum order)."""

    architecture: str | None
    registers: tuple[Register, ...]
    features: tuple[str, ...] = ()
    byteorder: Byteorder = "little"
    registers_by_name: Mapping[str, Register] = attrs.field(init=False, eq=False, repr=False)
    registers_by_number: Mapping[int, Register] = attrs.field(init=False, eq=False, repr=False)
    # the g decoder (_decoder) for each reply length seen
    _plans: dict[int, Decoder] = attrs.field(init=False, eq=False, repr=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "registers_by_name", {r.name: r for r in self.registers})
        object.__setattr__(self, "registers_by_number", {r.regnum: r for r in self.registers})

    def register(self, name: str) -> Register:
        """The register called ``name``.

        Raises:
            KeyError: the target has no such register (the message lists a few it has).
        """
        try:
            return self.registers_by_name[name]
        except KeyError:
            names = ", ".join(r.name for r in self.registers[:12])
            raise KeyError(
                f"no register {name!r} in the target description ({names}, ...)"
            ) from None

    def decode_registers(self, data: bytes) -> dict[str, int]:
        """The registers a ``g`` reply (its hex decoded) holds, by name; registers past its end
        are left out."""
        decode = self._plans.get(len(data))
        if decode is None:
            covered = [r for r in self.registers if r.offset + r.size <= len(data)]
            decode = self._plans[len(data)] = compile_decoder(covered, self.byteorder)
        return decode(data)

    def encode_value(self, reg: Register, value: int) -> bytes:
        """``value`` as ``reg``'s bytes in target order (negative values in two's complement).

        Raises:
            ValueError: the value does not fit.
        """
        limit = 1 << (reg.size * 8)
        if not -(limit >> 1) <= value < limit:
            raise ValueError(f"{value:#x} does not fit register {reg.name} ({reg.bitsize} bits)")
        return (value % limit).to_bytes(reg.size, self.byteorder)


_Item = tuple[str, Mapping[str, str] | str]


def _parse_document(annex: str, data: bytes) -> list[_Item]:
    """The architecture, features, registers, types and includes of one XML document, in
    document order."""
    items: list[_Item] = []
    text: list[str] = []
    in_architecture = False
    vector_types: set[str] = set()

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal in_architecture
        local = name.rpartition(":")[2]
        if local == "architecture":
            in_architecture = True
            text.clear()
        elif local == "feature":
            items.append(("feature", attributes.get("name", "")))
        elif local == "reg":
            items.append(("reg", attributes))
        elif local == "include":
            href = attributes.get("href")
            if not href:
                raise GdbProtocolError(f"target description {annex}: include without href")
            items.append(("include", href))
        elif local in ("vector", "union") and "id" in attributes:
            vector_types.add(attributes["id"])

    def end(name: str) -> None:
        nonlocal in_architecture
        if name.rpartition(":")[2] == "architecture":
            in_architecture = False
            items.append(("architecture", "".join(text).strip()))

    def chars(data: str) -> None:
        if in_architecture:
            text.append(data)

    parser = expat.ParserCreate()
    # no external entities or DTDs are fetched: the DOCTYPE's gdb-target.dtd is ignored
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise GdbProtocolError(f"target description {annex} is not valid XML: {exc}") from None
    items.extend(("vector-type", name) for name in sorted(vector_types))
    return items


class TargetDescriptionReader:
    """Collects ``target.xml`` and the documents it includes, then builds the description.

    Args:
        byteorder: the target's byte order, when known; by default it is guessed from the
            architecture (little-endian unless it is one that is big-endian only).
    """

    def __init__(self, *, byteorder: Byteorder | None = None) -> None:
        self._documents: dict[str, list[_Item]] = {}
        self._wanted: list[str] = ["target.xml"]
        self._byteorder = byteorder

    def next_annex(self) -> str | None:
        """The next document to fetch, or None when all are here."""
        while self._wanted:
            annex = self._wanted[0]
            if annex not in self._documents:
                return annex
            self._wanted.pop(0)
        return None

    def add(self, annex: str, data: bytes) -> None:
        """Add a fetched document.

        Raises:
            GdbProtocolError: it is not XML, is too large, or includes too many documents.
        """
        if len(data) > MAX_DOCUMENT:
            raise GdbProtocolError(f"target description {annex} is over {MAX_DOCUMENT} bytes")
        items = _parse_document(annex, data)
        self._documents[annex] = items
        for kind, value in items:
            if kind == "include" and isinstance(value, str) and value not in self._documents:
                self._wanted.append(value)
        if len(self._documents) + len(self._wanted) > MAX_DOCUMENTS:
            raise GdbProtocolError(f"target description includes over {MAX_DOCUMENTS} documents")

    def build(self) -> TargetDescription:
        """The description, with includes expanded in place.

        Raises:
            GdbProtocolError: a document is missing or includes itself, or a register is
                malformed.
        """
        registers: list[Register] = []
        features: list[str] = []
        architecture: list[str] = []
        vector_types: set[str] = set()
        for annex in self._documents:
            vector_types.update(str(v) for k, v in self._documents[annex] if k == "vector-type")
        next_regnum = 0
        feature = ""

        def walk(annex: str, stack: tuple[str, ...]) -> None:
            nonlocal next_regnum, feature
            if annex in stack:
                raise GdbProtocolError(f"target description {annex} includes itself")
            if annex not in self._documents:
                raise GdbProtocolError(f"target description {annex} was not fetched")
            for kind, value in self._documents[annex]:
                if kind == "architecture" and isinstance(value, str):
                    architecture.append(value)
                elif kind == "feature" and isinstance(value, str):
                    feature = value
                    features.append(value)
                elif kind == "include" and isinstance(value, str):
                    walk(value, (*stack, annex))
                elif kind == "reg" and not isinstance(value, str):
                    reg = _register(annex, value, next_regnum, feature, vector_types)
                    registers.append(reg)
                    next_regnum = reg.regnum + 1

        walk("target.xml", ())
        ordered = sorted(registers, key=lambda r: r.regnum)
        placed: list[Register] = []
        offset = 0
        seen: set[int] = set()
        for reg in ordered:
            if reg.regnum in seen:
                raise GdbProtocolError(f"target description: register number {reg.regnum} twice")
            seen.add(reg.regnum)
            placed.append(attrs.evolve(reg, offset=offset))
            offset += reg.size
        arch = architecture[0] if architecture else None
        byteorder = self._byteorder or (
            "big" if arch is not None and arch.startswith(_BIG_ENDIAN) else "little"
        )
        return TargetDescription(arch, tuple(placed), tuple(features), byteorder)


def _register(
    annex: str, attributes: Mapping[str, str], default_regnum: int, feature: str, vectors: set[str]
) -> Register:
    name = attributes.get("name")
    if not name:
        raise GdbProtocolError(f"target description {annex}: a register without a name")

    def number(key: str, default: int | None) -> int:
        text = attributes.get(key)
        if text is None:
            if default is None:
                raise GdbProtocolError(f"target description {annex}: register {name} has no {key}")
            return default
        if not text.isdigit():
            raise GdbProtocolError(
                f"target description {annex}: register {name} {key}={text!r} is not a number"
            )
        return int(text)

    bitsize = number("bitsize", None)
    if bitsize == 0 or bitsize > 4096:
        raise GdbProtocolError(f"target description {annex}: register {name} bitsize {bitsize}")
    reg_type = attributes.get("type", "int")
    group = attributes.get("group") or (
        "float" if reg_type in _FLOAT_TYPES else "vector" if reg_type in vectors else "general"
    )
    return Register(name, bitsize, number("regnum", default_regnum), reg_type, group, feature)
