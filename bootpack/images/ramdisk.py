"""A root tree as an initramfs the kernel boots directly: a reproducible newc cpio (cpio.py),
zstd- or lz4-compressed. An `/init` symlink to the tree's init lets the kernel start systemd
straight from the ramdisk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..external import need, run_fed
from ..progress import SILENT, Progress
from ..spec.model import RamdiskCompression
from .cpio import cpio_chunks

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
