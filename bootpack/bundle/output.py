"""Atomic output: build into a temporary sibling, swap it in only when everything succeeded.

A failed or interrupted build leaves an existing output directory and archive exactly as they
were, and never replaces a directory that is not a bootpack bundle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import BootpackError
from . import layout


def archive_path(output: Path) -> Path:
    return output.with_name(output.name + ".tar.gz")


def check_replaceable(output: Path) -> None:
    """Refuse to replace anything that is not an empty folder or an earlier bundle."""
    if not output.exists() and not output.is_symlink():
        return
    if output.is_symlink() or not output.is_dir():
        raise BootpackError(f"--output {output}: exists and is not a directory; "
                            "choose another path or remove it")
    if any(output.iterdir()) and not (output / layout.MANIFEST).is_file():
        raise BootpackError(f"--output {output}: exists, is not empty and is not a bootpack "
                            "bundle (no bundle.json); choose another path or remove it")


@contextlib.contextmanager
def staged_output(output: Path) -> Iterator[Path]:
    """Yield a temporary directory next to `output`; on success it becomes `output`.

    The archive, if the body writes one at `staging.parent / (staging.name + '.tar.gz')`,
    is swapped in too.
    """
    output = output.absolute()
    check_replaceable(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    staging.chmod(0o755)  # mkdtemp makes it 0700; daemons (tftpd, nginx) must read the bundle
    staged_archive = archive_path(staging)
    try:
        yield staging
        _swap(staging, output)
        if staged_archive.exists():
            os.replace(staged_archive, archive_path(output))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        staged_archive.unlink(missing_ok=True)


def _swap(staging: Path, output: Path) -> None:
    if not output.exists():
        os.rename(staging, output)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".old", dir=output.parent))
    os.rmdir(old)
    os.rename(output, old)
    try:
        os.rename(staging, output)
    except OSError:
        os.rename(old, output)
        raise
    shutil.rmtree(old, ignore_errors=True)
