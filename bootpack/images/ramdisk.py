"""A root tree as an initramfs the kernel boots directly: a sorted newc cpio, zstd- or
lz4-compressed.

The cpio is written here rather than by cpio(1), so that the result is byte-identical for the
same tree: entries sorted by path, inode numbers counted up, every time set to SOURCE_DATE_EPOCH,
owners and modes kept. Hard links are stored as separate files (the kernel unpacks them fine).
An `/init` symlink to the tree's init lets the kernel start systemd straight from the ramdisk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import BootpackError
from ..external import need, run_fed
from ..files import walk  # sorted by path; code-point order = UTF-8 byte order
from ..progress import SILENT, Progress
from ..spec.model import RamdiskCompression

# Firmware loads the initrd into memory below 4 GiB and kernels unpack it into RAM: past about
# 3-4 GiB many machines cannot boot it at all.
WARN_BYTES = 3 * 1024**3
# What each images.NAME.ramdisk_compression runs (reads the cpio on stdin, writes the file named
# last). Multi-threaded zstd output does not depend on the number of threads, so -T0 stays
# reproducible across machines. lz4 -l: the legacy frame, the only one the kernel unpacks;
# under TCG it unpacked the example's 750 MB in 4.7 s against zstd's 10.3 s, at 240 MB against
# 157 MB (docs/speed.md, round 4).
COMPRESSORS: dict[RamdiskCompression, tuple[str, ...]] = {
    "zstd": ("zstd", "-q", "-T0", "-10", "-f", "-o"),
    "lz4": ("lz4", "-l", "-9", "-q", "-f", "-"),
}


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
                raise BootpackError(f"{path}: changed while packing the ramdisk")
            yield b"\0" * (-size % 4)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
            yield _header(name, mode, st.st_uid, st.st_gid, mtime, 0, ino, rdev)
        elif stat.S_ISDIR(mode) or stat.S_ISFIFO(mode):
            yield _header(name, mode, st.st_uid, st.st_gid, mtime, 0, ino)
        # sockets are skipped: they mean nothing in an image
    yield _header("TRAILER!!!", 0, 0, 0, 0, 0, 0)


def make_ramdisk(tree: Path, target: Path, mtime: int, init: str | None,
                 progress: Progress = SILENT,
                 compression: RamdiskCompression = "zstd") -> int:
    """tree -> target (newc cpio | zstd or lz4). Returns the uncompressed size."""
    program, *options = COMPRESSORS[compression]
    tool = need(program, program)  # the Debian packages are named as the programs
    size = 0

    def counted() -> Iterator[bytes]:
        nonlocal size
        for chunk in cpio_chunks(tree, mtime, init):
            size += len(chunk)
            yield chunk

    run_fed([tool, *options, target], counted(), progress=progress,
            what=f"{program} (packing the ramdisk)")
    return size
