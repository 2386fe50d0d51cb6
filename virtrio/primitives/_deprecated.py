"""Old argument and attribute names kept, with a :class:`DeprecationWarning`, for one release.

Only names the README or docs/ documented get an alias; see the README's Changelog.
"""

from __future__ import annotations

import warnings

__all__ = ["warn_renamed"]


def warn_renamed(where: str, old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``where``'s ``old`` is now called ``new`` (``stacklevel`` as in warnings.warn,
    counted from the caller of this function's caller by default)."""
    warnings.warn(
        f"{where}: {old!r} is deprecated, use {new!r} (renamed in issue 11)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
