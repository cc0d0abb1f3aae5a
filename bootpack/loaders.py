"""Finding the boot loaders a bundle carries, in the Debian packages that ship them.

BIOS: syslinux (`pxelinux`, `syslinux-common`). x86-64 UEFI: Debian's signed shim
(`shim-signed`) and signed network GRUB (`grub-efi-amd64-signed`), the chain that boots with
Secure Boot on; and Debian's iPXE (`ipxe`, not signed) for the ipxe chain.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .bundle import layout
from .bundle.layout import SYSLINUX_FILES
from .errors import BootpackError
from .spec.model import Chain

# Where Debian puts them, and which package ships each folder: pxelinux.0 in the first, the
# BIOS .c32 modules in the second.
DEBIAN_DIRS = (
    (Path("/usr/lib/PXELINUX"), "pxelinux"),
    (Path("/usr/lib/syslinux/modules/bios"), "syslinux-common"),
)
ENV = "BOOTPACK_SYSLINUX_DIR"
# The bundle's pxelinux.0 is Debian's lpxelinux.0: the same loader with its own TCP/IP stack, so
# it fetches kernels and initrds over HTTP on any PXE ROM (plain pxelinux.0 only under iPXE).
# Kept under the name every DHCP config and PXE ROM already asks for.
SOURCE_NAMES = {layout.BOOTFILE: "lpxelinux.0"}

# Name in the TFTP root -> (Debian's file, its package), for the UEFI chain.
UEFI_FILES: dict[str, tuple[Path, str]] = {
    layout.UEFI_BOOTFILE: (Path("/usr/lib/shim/shimx64.efi.signed"), "shim-signed"),
    layout.UEFI_MOK_MANAGER: (Path("/usr/lib/shim/mmx64.efi.signed"), "shim-signed"),
    layout.UEFI_GRUB: (Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"),
                       "grub-efi-amd64-signed"),
    # the same GRUB build's module (grub-efi-amd64-signed depends on this package)
    layout.GRUB_HTTP_MODULE: (Path("/usr/lib/grub/x86_64-efi/http.mod"), "grub-efi-amd64-bin"),
}

# snponly.efi drives the NIC through the firmware's own network driver (UEFI SNP), so it works
# on any NIC the firmware can PXE-boot from; ipxe.efi brings its own drivers instead.
IPXE_FILES: dict[str, tuple[Path, str]] = {
    layout.IPXE_BOOTFILE: (Path("/usr/lib/ipxe/snponly.efi"), "ipxe"),
}


def find_syslinux_files(override: Path | None = None) -> dict[str, Path]:
    """File name -> path for every file in SYSLINUX_FILES.

    With an override folder (the --syslinux-dir option or $BOOTPACK_SYSLINUX_DIR) all files must
    be in it; otherwise they come from Debian's package folders.
    """
    if override is None and os.environ.get(ENV):
        override = Path(os.environ[ENV])
    found: dict[str, Path] = {}
    wanted = [SOURCE_NAMES.get(name, name) for name in SYSLINUX_FILES]
    for name, source in zip(SYSLINUX_FILES, wanted, strict=True):
        if override is not None:
            candidate = override / source
            if not candidate.is_file():
                raise BootpackError(f"{source} not found in {override} (from --syslinux-dir or "
                                    f"${ENV}); point it at a folder with {', '.join(wanted)}")
            found[name] = candidate
            continue
        folder, package = DEBIAN_DIRS[0] if name == layout.BOOTFILE else DEBIAN_DIRS[-1]
        if (folder / source).is_file():
            found[name] = folder / source
        else:
            raise BootpackError(f"{source} not found; install Debian's `{package}` package "
                                f"(apt-get install pxelinux syslinux-common) or pass --syslinux-dir")
    return found


def find_uefi_files() -> dict[str, Path]:
    """Name in the TFTP root -> Debian's file, for the x86-64 UEFI chain (shim -> GRUB)."""
    found: dict[str, Path] = {}
    for name, (path, package) in UEFI_FILES.items():
        if not path.is_file():
            raise BootpackError(
                f"{path.name} not found at {path} (the UEFI chain's {name}); install Debian's "
                f"`{package}` package (apt-get install shim-signed grub-efi-amd64-signed "
                "grub-efi-amd64-bin), or drop "
                "\"uefi\" from loaders.chains")
        found[name] = path
    return found


def find_ipxe_files() -> dict[str, Path]:
    """Name in the TFTP root -> Debian's file, for the ipxe chain."""
    found: dict[str, Path] = {}
    for name, (path, package) in IPXE_FILES.items():
        if not path.is_file():
            raise BootpackError(f"{path.name} not found at {path} (the ipxe chain's loader); "
                                f"install Debian's `{package}` package (apt-get install {package}), "
                                "or drop \"ipxe\" from loaders.chains")
        found[name] = path
    return found


def find_loader_files(chains: Sequence[Chain], syslinux_dir: Path | None = None) -> dict[str, Path]:
    """Name in the TFTP root -> source file, for every chain the bundle carries."""
    found: dict[str, Path] = {}
    if "bios" in chains:
        found.update(find_syslinux_files(syslinux_dir))
    if "uefi" in chains:
        found.update(find_uefi_files())
    if "ipxe" in chains:
        found.update(find_ipxe_files())
    return found
