"""Artefacts (programs, coverage, traces) in the data dir, content-addressed by SHA-256."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = ["ArtefactStore"]

_DIGEST = re.compile(r"[0-9a-f]{64}")


class ArtefactStore:
    """``root/<sha256>`` files: written once under their digest, never changed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its hex SHA-256 digest."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / digest
        if not path.exists():
            partial = path.with_suffix(f".{os.getpid()}.part")
            partial.write_bytes(data)
            partial.replace(path)
        return digest

    def put_file(self, source: Path) -> str:
        """Store a file's content; returns its digest."""
        return self.put(source.read_bytes())

    def path(self, digest: str) -> Path | None:
        """The file of ``digest``, or None if there is none (or it is no digest)."""
        if not _DIGEST.fullmatch(digest):
            return None
        path = self.root / digest
        return path if path.is_file() else None
