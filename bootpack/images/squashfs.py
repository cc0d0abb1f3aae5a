"""A root tree as a zstd squashfs, byte-identical for the same tree and SOURCE_DATE_EPOCH."""

from __future__ import annotations

from pathlib import Path

from ..external import need, run
from ..progress import SILENT, Progress

OPTIONS = ("-comp", "zstd", "-Xcompression-level", "15", "-b", "1M", "-no-xattrs", "-noappend",
           "-no-progress", "-quiet")


def make_squashfs(tree: Path, target: Path, mtime: int, progress: Progress = SILENT) -> None:
    """mksquashfs with fixed file and file-system times; owners and modes kept from the tree.

    Extended attributes are left out: they would carry the build host's security labels."""
    mksquashfs = need("mksquashfs", "squashfs-tools")
    run([mksquashfs, tree, target, *OPTIONS, "-mkfs-time", str(mtime), "-all-time", str(mtime)],
        progress=progress, what="mksquashfs")
