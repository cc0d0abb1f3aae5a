"""Where things live inside a bundle directory. One place, so every module agrees."""

from __future__ import annotations

from pathlib import Path

TFTP_DIR = "tftpboot"  # TFTP root and HTTP root
ETC_DIR = "etc"  # DHCP and NFS snippets
ROOTS_DIR = "roots"  # NFS root trees, one per image
MANIFEST = "bundle.json"
SPEC = "spec.json"  # the validated spec, so `bootpack serve` can re-render for its network
# Writable per-host NFS root trees (<server.root>/hosts/<name>, made by `bootpack serve` or by
# hand, never by build): user data, never part of a bundle. A rebuild or pull carries them over.
HOSTS_DIR = "hosts"
PXE_CONFIG_DIR = "pxelinux.cfg"
BOOTFILE = "pxelinux.0"
# Debian's plain pxelinux.0, for BIOS clients whose PXE ROM is iPXE (DHCP user class "iPXE") when
# loaders.bios_ipxe is off (else they run the iPXE scripts): it fetches http:// through iPXE's
# own HTTP, about 2x faster than lpxelinux.0's lwIP (field notes T10), and reads the same
# pxelinux.cfg files.
IPXE_BIOS_BOOTFILE = "pxelinux-ipxe.0"

# Files Debian ships in `pxelinux` and `syslinux-common` that a BIOS PXE boot with menu.c32 needs.
SYSLINUX_FILES = (BOOTFILE, IPXE_BIOS_BOOTFILE, "ldlinux.c32", "menu.c32", "libutil.c32",
                  "libcom32.c32")


def image_dir(image: str) -> str:
    """Folder of an image's boot files, relative to the TFTP/HTTP root."""
    return f"images/{image}"


def kernel_path(image: str) -> str:
    return f"{image_dir(image)}/vmlinuz"


def initrd_path(image: str) -> str:
    """The initrd of an image given as files (images.NAME.initrd)."""
    return f"{image_dir(image)}/initrd.img"


def netboot_initrd_path(image: str, mode: str) -> str:
    """The dracut initrd bootpack builds for a container image's root mode (live, nfs): one per
    mode, so each carries only what its root needs."""
    return f"{image_dir(image)}/initrd-{mode}.img"


def squashfs_path(image: str) -> str:
    return f"{image_dir(image)}/squashfs.img"


def ramdisk_path(image: str) -> str:
    """Root tree packed as an initramfs (ramdisk entries of container-built images)."""
    return f"{image_dir(image)}/ramdisk.img"


def root_tree_path(image: str) -> str:
    """Folder of an image's NFS root tree, relative to the bundle directory."""
    return f"{ROOTS_DIR}/{image}"


def pxelinux_host_file(mac: str) -> str:
    """pxelinux looks up `pxelinux.cfg/01-aa-bb-cc-dd-ee-ff` (ARP type 1, lower-case hex)."""
    return f"{PXE_CONFIG_DIR}/01-{mac.lower().replace(':', '-')}"


def archive_path(output: Path) -> Path:
    """DIR -> DIR.tar.gz, the bundle's archive next to its directory."""
    return output.with_name(output.name + ".tar.gz")


def is_user_data(rel: str) -> bool:
    """True for paths (relative to a bundle directory) that hold user data, not bundle files."""
    return rel == HOSTS_DIR or rel.startswith(HOSTS_DIR + "/")


# x86-64 UEFI chain (loaders.chains "uefi"): the firmware loads shim under the name UEFI uses
# for removable media, shim loads `grubx64.efi` from the same folder (and `mmx64.efi`, the MOK
# manager, when a key is to be enrolled), GRUB reads `grub/grub.cfg` and nothing else.
UEFI_BOOTFILE = "bootx64.efi"
UEFI_GRUB = "grubx64.efi"
UEFI_MOK_MANAGER = "mmx64.efi"
GRUB_DIR = "grub"
GRUB_CONFIG = f"{GRUB_DIR}/grub.cfg"
# GRUB loads modules from $prefix/x86_64-efi/; http.mod lets it fetch kernels over HTTP when
# Secure Boot is off (under Secure Boot GRUB refuses to load modules and falls back to TFTP).
GRUB_HTTP_MODULE = f"{GRUB_DIR}/x86_64-efi/http.mod"

# arm64 UEFI chain (loaders.chains "uefi-arm64"): the same scheme with arm64 names. Debian's arm64
# network GRUB also reads `grub/grub.cfg` (the same file as x86-64's: it sends arm64 machines on
# to their own menu) and loads modules from $prefix/arm64-efi/.
UEFI_ARM64_BOOTFILE = "bootaa64.efi"
UEFI_ARM64_GRUB = "grubaa64.efi"
UEFI_ARM64_MOK_MANAGER = "mmaa64.efi"
GRUB_ARM64_DIR = f"{GRUB_DIR}/arm64-efi"
GRUB_ARM64_HTTP_MODULE = f"{GRUB_ARM64_DIR}/http.mod"
GRUB_ARM64_MENU = f"{GRUB_ARM64_DIR}/menu.cfg"


def grub_host_file(mac: str) -> str:
    """A host's GRUB config, named by GRUB's own `$net_default_mac` form (lower case, colons)."""
    return f"{GRUB_DIR}/hosts/{mac.lower().replace('-', ':')}.cfg"


# iPXE chain (loaders.chains "ipxe"): the firmware loads Debian's snponly.efi (iPXE on the
# firmware's own network driver) over TFTP or HTTP; iPXE DHCPs again, sends user class "iPXE"
# and gets the URL of IPXE_SCRIPT, which chains a known host's file or the menu, all over HTTP.
IPXE_BOOTFILE = "snponly.efi"
IPXE_DIR = "ipxe"
IPXE_SCRIPT = f"{IPXE_DIR}/boot.ipxe"
IPXE_MENU = f"{IPXE_DIR}/default.ipxe"


def ipxe_host_file(mac: str) -> str:
    """A host's iPXE script, named by iPXE's `${netX/mac:hexhyp}` form (lower case, hyphens)."""
    return f"{IPXE_DIR}/hosts/{mac.lower().replace(':', '-')}.ipxe"
