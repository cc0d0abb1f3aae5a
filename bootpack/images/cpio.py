"""A folder as a newc cpio archive (what kernels unpack as an initramfs), written here rather than
by cpio(1) so that the bytes are the same for the same folder: entries sorted by path, inode
numbers counted up, every time set to SOURCE_DATE_EPOCH, owners and modes kept. Hard links are
stored as separate files (the kernel unpacks them fine). Used for the ramdisk root and for
bootpack's live initrd.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import BootpackError
from ..files import walk  # sorted by path; code-point order = UTF-8 byte order


def _header(name: str, st_mode: int, uid: int, gid: int, mtime: int, size: int, ino: int,
            rdev: tuple[int, int] = (0, 0)) -> bytes:
    fields = [ino, st_mode, uid, gid, 1, mtime, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(f"{f:08x}".encode() for f in fields) + name.encode() + b"\0"
    return head + b"\0" * (-len(head) % 4)


def cpio_chunks(root: Path, mtime: int, init: str | None = None) -> Iterator[bytes]:
    """root as a newc archive, in chunks (headers, file data, trailer)."""
    ino = 1
    yield _header(".", 0o040755, 0, 0, mtime, 0, ino)
    entries = list(walk(root))
    names = {p.relative_to(root).as_posix() for p in entries}
    if init is not None and "init" not in names:
        target = init.lstrip("/").encode()
        ino += 1
        yield _header("init", 0o120777, 0, 0, mtime, len(target), ino)
        yield target + b"\0" * (-len(target) % 4)
    for path in entries:
        ino += 1
        st = path.lstat()
        name = path.relative_to(root).as_posix()
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            data = os.readlink(path).encode()
            yield _header(name, mode, st.st_uid, st.st_gid, mtime, len(data), ino)
            yield data + b"\0" * (-len(data) % 4)
        elif stat.S_ISREG(mode):
            yield _header(name, mode, st.st_uid, st.st_gid, mtime, st.st_size, ino)
            size = 0
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    size += len(chunk)
                    yield chunk
            if size != st.st_size:
                raise BootpackError(f"{path}: changed while packing it into a cpio")
            yield b"\0" * (-size % 4)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
            yield _header(name, mode, st.st_uid, st.st_gid, mtime, 0, ino, rdev)
        elif stat.S_ISDIR(mode) or stat.S_ISFIFO(mode):
            yield _header(name, mode, st.st_uid, st.st_gid, mtime, 0, ino)
        # sockets are skipped: they mean nothing in an image
    yield _header("TRAILER!!!", 0, 0, 0, 0, 0, 0)
