"""Is a kernel signed for Secure Boot? Reads the PE header of an EFI-stub kernel (bzImage).

Under Secure Boot, shim and GRUB boot only a kernel whose PE image carries an Authenticode
signature (a certificate table, the PE "security" data directory) from a trusted key: Debian's
kernels are signed by Debian, a kernel developer's own bzImage is not. This module only looks for
the signature; whether its key is trusted is up to the firmware, shim and the enrolled MOKs.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Literal

from .model import DhcpMode, Spec

Signature = Literal["signed", "unsigned", "not-pe"]
_WIN_CERT_REVISION_2 = 0x0200
_WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002


def pe_signature(data: bytes) -> Signature:
    """"signed" when the PE image has an Authenticode certificate table, "unsigned" when it is a
    PE image without one, "not-pe" when it is no PE image at all (no EFI stub)."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        return "not-pe"
    (pe_offset,) = struct.unpack_from("<I", data, 0x3C)
    if pe_offset + 24 + 2 > len(data) or data[pe_offset:pe_offset + 4] != b"PE\0\0":
        return "not-pe"
    optional = pe_offset + 24
    (magic,) = struct.unpack_from("<H", data, optional)
    if magic == 0x20B:  # PE32+
        count_at, dirs_at = optional + 108, optional + 112
    elif magic == 0x10B:  # PE32
        count_at, dirs_at = optional + 92, optional + 96
    else:
        return "not-pe"
    if dirs_at > len(data):
        return "not-pe"
    (count,) = struct.unpack_from("<I", data, count_at)
    security = dirs_at + 4 * 8  # IMAGE_DIRECTORY_ENTRY_SECURITY
    if count <= 4 or security + 8 > len(data):
        return "unsigned"
    offset, size = struct.unpack_from("<II", data, security)
    if size < 8 or offset + size > len(data):
        return "unsigned"
    length, revision, kind = struct.unpack_from("<IHH", data, offset)
    if length < 8 or revision != _WIN_CERT_REVISION_2 or kind != _WIN_CERT_TYPE_PKCS_SIGNED_DATA:
        return "unsigned"
    return "signed"


def kernel_signature(path: Path) -> Signature:
    return pe_signature(path.read_bytes())


def proxy_mode_warnings(spec: Spec, mode: DhcpMode) -> list[str]:
    """What a UEFI machine gets behind a proxy DHCP (dhcp.mode or serve --dhcp proxy).

    Debian's GRUB 2.06 takes its TFTP server from the LAN server's ACK, not from the proxy offer,
    so the Secure Boot chain (shim -> GRUB) cannot boot there; iPXE can, but is not signed."""
    chains = spec.loaders.chains
    if mode != "proxy" or not ({"uefi", "ipxe"} & set(chains)):
        return []
    secure = [e.name for e in spec.entries if e.secure_boot]
    if "ipxe" in chains:
        if not secure and "uefi" not in chains:
            return []
        return [f"proxy mode: x86-64 UEFI clients get iPXE (not signed), so machines with Secure "
                f"Boot on cannot boot{' entries ' + ', '.join(secure) if secure else ''} here "
                "(the firmware refuses iPXE); boot them with the appliance as the DHCP server "
                "(dhcp.mode = 'server'), give them hosts[].chain = 'uefi' and point the LAN "
                "server's next-server here, or turn Secure Boot off (see README: UEFI and Secure "
                "Boot)"]
    return ["proxy mode: x86-64 UEFI clients get shim and GRUB, but Debian's GRUB then looks for "
            "grub.cfg on the LAN DHCP server's next-server, not on this server, and stops; add "
            "'ipxe' to loaders.chains (Secure Boot off), point the LAN server's next-server here, "
            "or serve in server mode"]


def secure_boot_warnings(spec: Spec, base: Path) -> list[str]:
    """A warning for each entry marked secure_boot whose kernel (given as a file) is unsigned.

    Kernels of container-built images are only known after the build and are not checked."""
    warnings = proxy_mode_warnings(spec, spec.dhcp.mode)
    for index, entry in enumerate(spec.entries):
        if not entry.secure_boot or entry.image is None:
            continue
        image = spec.images.get(entry.image)
        if image is None or image.kernel is None:
            continue
        path = base / image.kernel
        if not path.is_file():
            continue  # reported as a missing file
        state = kernel_signature(path)
        if state == "signed":
            continue
        what = "has no Secure Boot signature" if state == "unsigned" else \
            "is not an EFI (PE) image, so it cannot carry a Secure Boot signature"
        warnings.append(
            f"entries[{index}] ({entry.name}): secure_boot = true but kernel {image.kernel!r} {what}; "
            "under Secure Boot GRUB refuses it ('bad shim signature'). Sign it with a key enrolled "
            "as a MOK (sbsign, then mokutil --import), boot a signed distribution kernel, or turn "
            "Secure Boot off on those machines (see README: UEFI and Secure Boot)")
    return warnings
