"""PC AT (set 1) scancodes: key names, combos like ``ctrl-alt-delete`` and US-layout text.

A key's *code* is the Spice KEY_DOWN u32: the scancode bytes in wire order, e.g. ``0x1E`` for
``a`` and ``0x53E0`` (bytes ``E0 53``) for Delete; the break code sets bit 7 of the last byte.
"""

from __future__ import annotations

from virtrio.errors import ConfigError

__all__ = ["break_code", "combo_codes", "key_code", "text_strokes"]

_PLAIN: dict[str, int] = {
    "esc": 0x01, "escape": 0x01, "minus": 0x0C, "equal": 0x0D, "backspace": 0x0E, "tab": 0x0F,
    "bracketleft": 0x1A, "bracketright": 0x1B, "enter": 0x1C, "return": 0x1C, "ctrl": 0x1D,
    "lctrl": 0x1D, "control": 0x1D, "semicolon": 0x27, "apostrophe": 0x28, "grave": 0x29,
    "shift": 0x2A, "lshift": 0x2A, "backslash": 0x2B, "comma": 0x33, "period": 0x34, "dot": 0x34,
    "slash": 0x35, "rshift": 0x36, "kp_multiply": 0x37, "alt": 0x38, "lalt": 0x38,
    "space": 0x39, "spc": 0x39, "capslock": 0x3A, "numlock": 0x45, "scrolllock": 0x46,
    "kp_7": 0x47, "kp_8": 0x48, "kp_9": 0x49, "kp_subtract": 0x4A, "kp_4": 0x4B, "kp_5": 0x4C,
    "kp_6": 0x4D, "kp_add": 0x4E, "kp_1": 0x4F, "kp_2": 0x50, "kp_3": 0x51, "kp_0": 0x52,
    "kp_decimal": 0x53, "f11": 0x57, "f12": 0x58,
}  # fmt: skip
_EXTENDED: dict[str, int] = {
    "kp_enter": 0x1C, "rctrl": 0x1D, "kp_divide": 0x35, "ralt": 0x38, "altgr": 0x38,
    "home": 0x47, "up": 0x48, "pgup": 0x49, "pageup": 0x49, "left": 0x4B, "right": 0x4D,
    "end": 0x4F, "down": 0x50, "pgdn": 0x51, "pagedown": 0x51, "insert": 0x52, "ins": 0x52,
    "delete": 0x53, "del": 0x53, "meta": 0x5B, "lwin": 0x5B, "super": 0x5B, "rwin": 0x5C,
    "menu": 0x5D,
}  # fmt: skip
for _i, _c in enumerate("1234567890"):
    _PLAIN[_c] = 0x02 + _i
for _row, _start in (("qwertyuiop", 0x10), ("asdfghjkl", 0x1E), ("zxcvbnm", 0x2C)):
    for _i, _c in enumerate(_row):
        _PLAIN[_c] = _start + _i
for _i in range(10):
    _PLAIN[f"f{_i + 1}"] = 0x3B + _i

_UNSHIFTED = {
    "-": 0x0C, "=": 0x0D, "[": 0x1A, "]": 0x1B, ";": 0x27, "'": 0x28, "`": 0x29, "\\": 0x2B,
    ",": 0x33, ".": 0x34, "/": 0x35, " ": 0x39, "\n": 0x1C, "\t": 0x0F,
}  # fmt: skip
_SHIFTED = {
    "!": 0x02, "@": 0x03, "#": 0x04, "$": 0x05, "%": 0x06, "^": 0x07, "&": 0x08, "*": 0x09,
    "(": 0x0A, ")": 0x0B, "_": 0x0C, "+": 0x0D, "{": 0x1A, "}": 0x1B, ":": 0x27, '"': 0x28,
    "~": 0x29, "|": 0x2B, "<": 0x33, ">": 0x34, "?": 0x35,
}  # fmt: skip
_SHIFT = 0x2A


def key_code(name: str) -> int:
    """The make code of key ``name`` (case-insensitive; ``0x..`` gives a raw scancode)."""
    lower = name.lower()
    if lower in _PLAIN:
        return _PLAIN[lower]
    if lower in _EXTENDED:
        return (_EXTENDED[lower] << 8) | 0xE0
    if name in _UNSHIFTED:
        return _UNSHIFTED[name]
    if lower.startswith("0x"):
        try:
            value = int(lower, 16)
        except ValueError:
            pass
        else:
            if 0 < value <= 0xFFFF:
                return value
    raise ConfigError(f"unknown key name {name!r}")


def break_code(code: int) -> int:
    """The break code of make ``code`` (bit 7 of its last byte set)."""
    if code > 0xFF:
        return code | 0x8000
    return code | 0x80


def combo_codes(combo: str) -> list[int]:
    """Make codes of ``combo`` (``ctrl-alt-delete``, ``shift+a``), pressed in order."""
    parts = [p for p in combo.replace("+", "-").split("-") if p] if len(combo) > 1 else [combo]
    if not parts:
        raise ConfigError(f"empty key combination {combo!r}")
    return [key_code(p) for p in parts]


def text_strokes(text: str) -> list[list[int]]:
    """For each character of ``text`` (US layout) the make codes to hold, modifiers first."""
    strokes = []
    for ch in text:
        if ch in _UNSHIFTED:
            strokes.append([_UNSHIFTED[ch]])
        elif ch in _SHIFTED:
            strokes.append([_SHIFT, _SHIFTED[ch]])
        elif ch.isascii() and ch.isalpha():
            code = _PLAIN[ch.lower()]
            strokes.append([_SHIFT, code] if ch.isupper() else [code])
        elif ch.isascii() and ch.isdigit():
            strokes.append([_PLAIN[ch]])
        else:
            raise ConfigError(f"cannot type {ch!r} with a US keyboard layout")
    return strokes
