"""Finding the boot loaders a bundle carries, in the Debian packages that ship them.

BIOS: syslinux (`pxelinux`, `syslinux-common`). x86-64 UEFI: Debian's signed shim
(`shim-signed`) and signed network GRUB (`grub-efi-amd64-signed`), the chain that boots with
Secure Boot on; and Debian's iPXE (`ipxe`, not signed) for the ipxe chain. arm64 UEFI: shim
and GRUB from Debian's arm64 packages. On an arm64 machine they are installed where Debian puts
them; on an x86-64 one they cannot be installed next to the amd64 ones, so scripts/install
unpacks them (`apt-get download`, `dpkg -x`) under ARM64_ROOT.

A Debian image of the spec that has the signed packages installed itself carries its own copy:
the UEFI chain of its architecture then takes all its files from the image's root tree (the
first such image by name), so the loaders match the image's own Debian release. bundle.json
records where each loader came from (`LoaderSource`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .bundle import layout
from .bundle.layout import SYSLINUX_FILES
from .bundle.manifest import LoaderSource
from .errors import BootpackError
from .spec.model import Architecture, Chain

# Where Debian puts them, and which package ships each folder: pxelinux.0 in the first, the
# BIOS .c32 modules in the second.
DEBIAN_DIRS = (
    (Path("/usr/lib/PXELINUX"), "pxelinux"),
    (Path("/usr/lib/syslinux/modules/bios"), "syslinux-common"),
)
ENV = "BOOTPACK_SYSLINUX_DIR"
# The bundle's pxelinux.0 is Debian's lpxelinux.0: the same loader with its own TCP/IP stack, so
# it fetches kernels and initrds over HTTP on any PXE ROM (plain pxelinux.0 only under iPXE).
# Kept under the name every DHCP config and PXE ROM already asks for. Plain pxelinux.0
# (layout.IPXE_BIOS_BOOTFILE) goes to clients whose ROM is iPXE when loaders.bios_ipxe is off;
# it uses iPXE's own HTTP, faster than lpxelinux's.
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


@dataclass(frozen=True)
class ImageRoot:
    """A built spec image's root tree, which may carry Debian's signed loaders itself."""

    name: str  # the spec's image name
    architecture: Architecture
    root: Path


@dataclass(frozen=True)
class Loader:
    path: Path  # the file to copy into the TFTP root
    source: LoaderSource  # what bundle.json says about it


# The chains an image can carry the loaders of: chain -> (its architecture, name in the TFTP root
# -> (path in a Debian root, package)). Every file of the chain must be in the image (one root:
# one GRUB build with its own modules); Debian's signed shim depends on the MOK manager's
# package and signed GRUB on the -bin one with http.mod, so an image with both has them all.
IMAGE_CHAINS: dict[Chain, tuple[Architecture, dict[str, tuple[Path, str]]]] = {
    "uefi": ("x86_64", {name: (path.relative_to("/"), package)
                        for name, (path, package) in UEFI_FILES.items()}),
    "uefi-arm64": ("arm64", UEFI_ARM64_FILES),
}


def _in_root(root: Path, rel: Path) -> Path | None:
    """root/rel when it is a regular file inside root: an image's symlink (absolute, or out
    through ..) must not pull a file of this machine into the bundle."""
    path = root / rel
    try:
        resolved = path.resolve(strict=True)
        if not stat.S_ISREG(os.lstat(resolved).st_mode):
            return None
    except OSError:
        return None
    return resolved if resolved.is_relative_to(root.resolve()) else None


def _image_loaders(chain: Chain, images: Sequence[ImageRoot]) -> dict[str, Loader] | None:
    architecture, files = IMAGE_CHAINS[chain]
    for image in sorted(images, key=lambda i: i.name):
        if image.architecture != architecture:
            continue
        found = {name: _in_root(image.root, rel) for name, (rel, _) in files.items()}
        if all(found.values()):
            return {name: Loader(path, LoaderSource(package=files[name][1],
                                                    path=f"/{files[name][0]}", image=image.name))
                    for name, path in found.items() if path is not None}
    return None


def _system_loaders(chain: Chain, syslinux_dir: Path | None) -> dict[str, Loader]:
    """The chain's files from this machine (installed packages, or scripts/install's unpacked
    arm64 ones); the source names the Debian path, wherever the root they were found in."""
    if chain == "bios":
        packages = dict(DEBIAN_DIRS)  # not there: a --syslinux-dir folder, named by file only
        return {name: Loader(path, LoaderSource(package=packages.get(path.parent),
                                                path=str(path) if path.parent in packages
                                                else path.name))
                for name, path in find_syslinux_files(syslinux_dir).items()}
    if chain == "uefi-arm64":
        return {name: Loader(path, LoaderSource(package=UEFI_ARM64_FILES[name][1],
                                                path=f"/{UEFI_ARM64_FILES[name][0]}"))
                for name, path in find_uefi_arm64_files().items()}
    table, finder = (UEFI_FILES, find_uefi_files) if chain == "uefi" else (IPXE_FILES,
                                                                           find_ipxe_files)
    return {name: Loader(path, LoaderSource(package=table[name][1], path=str(path)))
            for name, path in finder().items()}


def find_loaders(chains: Sequence[Chain], syslinux_dir: Path | None = None,
                 images: Sequence[ImageRoot] = ()) -> dict[str, Loader]:
    """Name in the TFTP root -> loader, for every chain the bundle carries: a UEFI chain's from
    an image of its architecture that carries them all, else from this machine."""
    found: dict[str, Loader] = {}
    for chain in ("bios", "uefi", "ipxe", "uefi-arm64"):
        if chain in chains:
            from_image = _image_loaders(chain, images) if chain in IMAGE_CHAINS else None
            found.update(from_image or _system_loaders(chain, syslinux_dir))
    return found


def find_loader_files(chains: Sequence[Chain], syslinux_dir: Path | None = None,
                      images: Sequence[ImageRoot] = ()) -> dict[str, Path]:
    """Name in the TFTP root -> source file, for every chain the bundle carries."""
    return {name: loader.path for name, loader in find_loaders(chains, syslinux_dir, images).items()}
