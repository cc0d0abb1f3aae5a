"""Finding the syslinux BIOS boot files (Debian's `pxelinux` and `syslinux-common`)."""

from __future__ import annotations

import os
from pathlib import Path

from .bundle.layout import SYSLINUX_FILES
from .errors import BootpackError

# Where Debian puts them, and which package ships each folder: pxelinux.0 in the first, the
# BIOS .c32 modules in the second.
DEBIAN_DIRS = (
    (Path("/usr/lib/PXELINUX"), "pxelinux"),
    (Path("/usr/lib/syslinux/modules/bios"), "syslinux-common"),
)
ENV = "BOOTPACK_SYSLINUX_DIR"


def find_syslinux_files(override: Path | None = None) -> dict[str, Path]:
    """File name -> path for every file in SYSLINUX_FILES.

    With an override folder (the --syslinux-dir option or $BOOTPACK_SYSLINUX_DIR) all files must
    be in it; otherwise they come from Debian's package folders.
    """
    if override is None and os.environ.get(ENV):
        override = Path(os.environ[ENV])
    found: dict[str, Path] = {}
    for name in SYSLINUX_FILES:
        if override is not None:
            candidate = override / name
            if not candidate.is_file():
                raise BootpackError(f"{name} not found in {override} (from --syslinux-dir or "
                                    f"${ENV}); point it at a folder with {', '.join(SYSLINUX_FILES)}")
            found[name] = candidate
            continue
        folder, package = DEBIAN_DIRS[0] if name == "pxelinux.0" else DEBIAN_DIRS[-1]
        if (folder / name).is_file():
            found[name] = folder / name
        else:
            raise BootpackError(f"{name} not found; install Debian's `{package}` package "
                                f"(apt-get install pxelinux syslinux-common) or pass --syslinux-dir")
    return found
