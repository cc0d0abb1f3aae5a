"""A root tree as a squashfs, byte-identical for the same tree and SOURCE_DATE_EPOCH."""

from __future__ import annotations

from pathlib import Path

from ..external import need, run
from ..progress import SILENT, Progress
from ..spec.model import SquashfsCompression

# What each images.NAME.squashfs_compression gives mksquashfs. zstd: the smallest (170 MB for the
# example). lz4 with 128 KB blocks: 244 MB, but a booted live system reads it faster: under TCG,
# root received to marker was lower in 5 of 5 interleaved pairs, by 3.8 s at the median
# (docs/speed.md, round 4), where a page read from a 1 MB zstd block decompresses the whole block.
COMPRESSION: dict[SquashfsCompression, tuple[str, ...]] = {
    "zstd": ("-comp", "zstd", "-Xcompression-level", "15", "-b", "1M"),
    "lz4": ("-comp", "lz4", "-Xhc", "-b", "128K"),
}
COMMON = ("-no-xattrs", "-noappend", "-no-progress", "-quiet")


def options(compression: SquashfsCompression = "zstd") -> tuple[str, ...]:
    """mksquashfs's options for a compression (part of the squashfs step's cache key)."""
    return (*COMPRESSION[compression], *COMMON)


def make_squashfs(tree: Path, target: Path, mtime: int, progress: Progress = SILENT,
                  compression: SquashfsCompression = "zstd") -> None:
    """mksquashfs with fixed file and file-system times; owners and modes kept from the tree.

    Extended attributes are left out: they would carry the build host's security labels."""
    mksquashfs = need("mksquashfs", "squashfs-tools")
    run([mksquashfs, tree, target, *options(compression), "-mkfs-time", str(mtime),
         "-all-time", str(mtime)], progress=progress, what="mksquashfs")
