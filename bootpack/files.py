"""The one sha256 helper and the one sorted tree walk.

Digests are written the OCI way, `sha256:<hex>`, everywhere bootpack shows or stores them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import IO

PREFIX = "sha256:"
CHUNK = 1 << 20


class Sha256:
    """An incremental sha256 that also counts the bytes it was fed."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        return PREFIX + self._h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return PREFIX + hashlib.sha256(data).hexdigest()


def sha256_stream(f: IO[bytes]) -> tuple[str, int]:
    """(digest, size) of everything left in f."""
    h = Sha256()
    while block := f.read(CHUNK):
        h.update(block)
    return h.digest, h.size


def sha256_file(path: Path) -> tuple[str, int]:
    """(digest, size) of a file's content."""
    with path.open("rb") as f:
        return sha256_stream(f)


def walk_rel(root: Path, skip: AbstractSet[str] = frozenset()) -> list[str]:
    """`walk` as relative POSIX path strings, same order: no Path objects (on a 15,000-file
    root tree pathlib costs more than the lstat calls). Folders in `skip` are listed but not
    entered."""
    found: list[str] = []
    start = len(os.fspath(root)) + 1
    for dirpath, dirnames, filenames in os.walk(root):
        rel = dirpath[start:]
        prefix = rel + "/" if rel else ""
        found.extend(prefix + d for d in dirnames)
        if skip:
            dirnames[:] = [d for d in dirnames if prefix + d not in skip]
        found.extend(prefix + f for f in filenames)
    found.sort()
    return found


def walk(root: Path) -> list[Path]:
    """Every file, symlink and directory under root (root itself excluded, symlinked folders
    not followed), sorted by relative POSIX path: parents before their contents, and the same
    order on every machine (code-point order = UTF-8 byte order)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        found.extend(base / d for d in dirnames)
        found.extend(base / f for f in filenames)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def read_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    """A file's bytes in chunks (to feed a program's stdin without holding the file)."""
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk
