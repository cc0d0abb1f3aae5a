"""Finding the boot loaders a bundle carries, in the Debian packages that ship them.

BIOS: syslinux (`pxelinux`, `syslinux-common`). x86-64 UEFI: Debian's signed shim
(`shim-signed`) and signed network GRUB (`grub-efi-amd64-signed`), the chain that boots with
Secure Boot on; and Debian's iPXE (`ipxe`, not signed) for the ipxe chain. arm64 UEFI: shim
and GRUB from Debian's arm64 packages. On an arm64 machine they are installed where Debian puts
them; on an x86-64 one they cannot be installed next to the amd64 ones, so scripts/install
unpacks them (`apt-get download`, `dpkg -x`) under ARM64_ROOT.
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
# Kept under the name every DHCP config and PXE ROM already asks for. Plain pxelinux.0 goes to
# clients whose ROM is iPXE (layout.IPXE_BIOS_BOOTFILE), whose own HTTP is faster.
SOURCE_NAMES = {layout.BOOTFILE: "lpxelinux.0", layout.IPXE_BIOS_BOOTFILE: "pxelinux.0"}

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
# Name in the TFTP root -> (Debian's file, its arm64 package), for the arm64 UEFI chain; paths
# relative to the root of an arm64 Debian file system.
UEFI_ARM64_FILES: dict[str, tuple[Path, str]] = {
    layout.UEFI_ARM64_BOOTFILE: (Path("usr/lib/shim/shimaa64.efi.signed"), "shim-signed"),
    layout.UEFI_ARM64_MOK_MANAGER: (Path("usr/lib/shim/mmaa64.efi.signed"),
                                    "shim-helpers-arm64-signed"),
    layout.UEFI_ARM64_GRUB: (Path("usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"),
                             "grub-efi-arm64-signed"),
    layout.GRUB_ARM64_HTTP_MODULE: (Path("usr/lib/grub/arm64-efi/http.mod"), "grub-efi-arm64-bin"),
}
# Where scripts/install unpacks Debian's arm64 packages on a machine of another architecture.
ARM64_ROOT = Path("/usr/local/lib/bootpack/arm64")
ARM64_ENV = "BOOTPACK_ARM64_ROOT"


def arm64_roots() -> list[Path]:
    """Where to look for the arm64 files, in order: $BOOTPACK_ARM64_ROOT alone when set, else
    the system (an arm64 host) and then ARM64_ROOT."""
    if os.environ.get(ARM64_ENV):
        return [Path(os.environ[ARM64_ENV])]
    return [Path("/"), ARM64_ROOT]


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
        folder, package = DEBIAN_DIRS[0] if name.endswith(".0") else DEBIAN_DIRS[-1]
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
def find_uefi_arm64_files() -> dict[str, Path]:
    """Name in the TFTP root -> Debian's file, for the arm64 UEFI chain (shim -> GRUB), all from
    the first root that has them all (one root: one set of package versions)."""
    roots = arm64_roots()
    for root in roots:
        paths = {name: root / path for name, (path, _) in UEFI_ARM64_FILES.items()}
        if all(p.is_file() for p in paths.values()):
            return paths
    missing = sorted({package for path, package in UEFI_ARM64_FILES.values()
                      if not any((root / path).is_file() for root in roots)})
    where = " or ".join(str(r) for r in roots)
    debs = " ".join(f"{p}:arm64" for p in missing)
    raise BootpackError(
        f"the uefi-arm64 chain's loaders are missing (Debian's arm64 {', '.join(missing)}; looked "
        f"under {where}). On an x86-64 machine run scripts/install, or by hand: dpkg "
        f"--add-architecture arm64 && apt-get update && apt-get download {debs} && for d in "
        f"*.deb; do dpkg -x $d {ARM64_ROOT}; done (or set ${ARM64_ENV} to where they are "
        f"unpacked); on an arm64 machine: apt-get install {' '.join(missing)}. Or drop "
        "\"uefi-arm64\" from loaders.chains")


def find_loader_files(chains: Sequence[Chain], syslinux_dir: Path | None = None) -> dict[str, Path]:
    """Name in the TFTP root -> source file, for every chain the bundle carries."""
    found: dict[str, Path] = {}
    if "bios" in chains:
        found.update(find_syslinux_files(syslinux_dir))
    if "uefi" in chains:
        found.update(find_uefi_files())
    if "ipxe" in chains:
        found.update(find_ipxe_files())
    if "uefi-arm64" in chains:
        found.update(find_uefi_arm64_files())
    return found
