"""Boot events from the daemons' own log lines: pure parsers, no I/O.

Every line a supervised daemon prints passes through `Output.line(name, text)`; `parse_line`
turns the ones that tell something about a booting client into typed events:

- ISC dhcpd (server mode): `DHCPDISCOVER from MAC via IF`, `DHCPOFFER on IP to MAC via IF`,
  `DHCPREQUEST for IP (SERVER) from MAC via IF`, `DHCPACK on IP to MAC via IF`, `DHCPNAK`;
- dnsmasq (proxy mode): `PXE(IF) MAC proxy` (a PXE DISCOVER answered with boot data),
  `PXE(IF) IP MAC FILE` (a boot-server request), and the DHCP lines of server mode;
- tftpd-hpa (via syslog): `RRQ from IP filename FILE`, `sending NAK (N, TEXT) to IP`;
- nginx: the access line format `ACCESS_FORMAT` (runtime.render_nginx sets it);
- NFS-Ganesha (its CLIENTID component at DEBUG, runtime.GANESHA_LOG): `CREATE_SESSION client
  addr=IP` (an NFSv4.1+ client's session) and `SETCLIENTID_CONFIRM client addr=IP` (NFSv4.0);
- rpcbind (-d): `PMAP_GETPORT|RPCB_GETADDR req for (100005, V, PROTO) from IP.P.P`, an NFSv3
  client asking where the MOUNT service is, the first step of its mount.

A file's kind (loader, config, kernel, initrd, root) comes from the bundle layout's paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..bundle import layout
from ..spec.model import Architecture

DhcpMessage = Literal["discover", "offer", "request", "ack", "nak", "decline", "release", "inform",
                      "pxe"]
FileKind = Literal["loader", "config", "kernel", "initrd", "root", "other"]
Protocol = Literal["tftp", "http"]

ACCESS_TAG = "bootpack-access"
# nginx log_format: tag, client, method, URI as requested, status, body bytes, seconds.
ACCESS_FORMAT = (f"{ACCESS_TAG} $remote_addr $request_method $request_uri $status "
                 "$body_bytes_sent $request_time")
LOADER_SUFFIXES = (".0", ".c32", ".efi", ".kpxe", ".pxe", ".ipxe")


@dataclass(frozen=True)
class DhcpEvent:
    message: DhcpMessage
    mac: str
    ip: str | None = None  # the address offered/acked/requested (None for a discover)
    mode: Literal["server", "proxy"] = "server"
    bootfile: str | None = None  # proxy mode: the boot file the PXE client was told to load


@dataclass(frozen=True)
class FileEvent:
    protocol: Protocol
    client: str  # IP
    path: str  # relative to the TFTP/HTTP root, no leading slash
    kind: FileKind
    ok: bool = True
    status: int | None = None  # HTTP status
    bytes: int | None = None  # HTTP body bytes (TFTP: unknown from the log)
    seconds: float | None = None  # HTTP request time
    method: str = "GET"


@dataclass(frozen=True)
class TftpError:
    client: str
    code: int
    text: str


@dataclass(frozen=True)
class NfsMount:
    """A client starts mounting an NFS root: its NFSv4 client is confirmed (a session), or its
    NFSv3 mount looks up the MOUNT service. Ganesha logs no per-export mount cheaply: which
    root it mounts comes from the host's entry."""

    client: str  # IP
    version: str  # "3", "4.0", "4.1+"
    how: str  # the request seen


BootEvent = DhcpEvent | FileEvent | TftpError | NfsMount

_MAC = r"(?P<mac>[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})"
_IP = r"(?P<ip>\d{1,3}(?:\.\d{1,3}){3})"
_DHCPD = {
    "discover": re.compile(rf"^DHCPDISCOVER from {_MAC}\b"),
    "offer": re.compile(rf"^DHCPOFFER on {_IP} to {_MAC}\b"),
    "request": re.compile(rf"^DHCPREQUEST for {_IP} (?:\([^)]*\) )?from {_MAC}\b"),
    "ack": re.compile(rf"^DHCPACK on {_IP} to {_MAC}\b"),
    "nak": re.compile(rf"^DHCPNAK on {_IP} to {_MAC}\b"),
    "decline": re.compile(rf"^DHCPDECLINE of {_IP} from {_MAC}\b"),
    "release": re.compile(rf"^DHCPRELEASE of {_IP} from {_MAC}\b"),
}
# dnsmasq: "dnsmasq-dhcp[7]: 123456 DHCPACK(eth0) 10.0.0.5 52:54:00:..", "PXE(eth0) MAC proxy",
# "PXE(eth0) IP MAC pxelinux.0"; the transaction id appears with log-dhcp.
_DNSMASQ = re.compile(
    rf"(?:^|\s)(?P<kind>DHCP[A-Z]+|PXE)\([^)]*\)\s+(?:{_IP}\s+)?{_MAC}(?:\s+(?P<rest>\S+))?")
_RRQ = re.compile(rf"^RRQ from (?:::ffff:)?{_IP} filename (?P<file>\S+)")
_NAK = re.compile(rf"^sending NAK \((?P<code>\d+), (?P<text>[^)]*)\) to (?:::ffff:)?{_IP}")
_ACCESS = re.compile(
    rf"^{ACCESS_TAG} {_IP} (?P<method>[A-Z]+) (?P<uri>\S+) (?P<status>\d{{3}}) (?P<bytes>\d+) "
    r"(?P<seconds>[\d.]+)")

# Ganesha: "... :CLIENT ID :DEBUG :CREATE_SESSION client addr=::ffff:10.0.0.5 clientid=..."
_GANESHA = re.compile(rf":(?P<op>CREATE_SESSION|SETCLIENTID_CONFIRM) client addr=(?:::ffff:)?{_IP}\b")
# What rpcbind -d prints besides the lookups (its start-up, each registration, address merging).
_RPCBIND_DEBUG = re.compile(r"^(?:$|rpcbind: |mergeaddr|addrmerge|libtirpc: debug|[a-z_]*: \d+ lookup)")
MOUNT_PROGRAM = 100005  # the NFSv3 MOUNT protocol's RPC program number
# rpcbind -d: "rpcbind: PMAP_GETPORT req for (100005, 3, tcp) from 10.0.0.5.2.9 :" (the caller's
# universal address: IP then the port's two bytes)
_RPCBIND = re.compile(rf"(?P<op>PMAP_GETPORT|RPCB_GETADDR) req for \({MOUNT_PROGRAM}, (?P<vers>\d+), "
                      rf"(?P<proto>\w+)\) from {_IP}\.\d+\.\d+")


def file_kind(path: str) -> FileKind:
    """What a requested path is, from the bundle layout (no leading slash, no query)."""
    path = path.lstrip("/")
    name = path.rsplit("/", 1)[-1]
    if path == layout.IPXE_SCRIPT:
        return "loader"  # what DHCP hands an iPXE ROM (BIOS) in place of an NBP
    if path.startswith((f"{layout.PXE_CONFIG_DIR}/", f"{layout.IPXE_DIR}/")) or name.endswith(".cfg"):
        return "config"  # pxelinux.cfg/*, grub/*.cfg, ipxe/*.ipxe
    if path.startswith("images/"):
        if name == "vmlinuz":
            return "kernel"
        if name == "ramdisk.img" or (name.startswith("initrd") and name.endswith(".img")):
            return "initrd"
        if name == "squashfs.img":
            return "root"
    if ("/" not in path and name.endswith(LOADER_SUFFIXES)) or name in layout.SYSLINUX_FILES:
        return "loader"
    return "other"


# Files only one architecture's loaders ask for: the arm64 chain's shim, MOK manager and GRUB,
# and its GRUB's module folder (it asks for arm64-efi/command.lst first); every other loader,
# module and per-loader config folder is x86-64's. grub/grub.cfg is shared, so it tells nothing.
_ARM64_FILES = (layout.UEFI_ARM64_BOOTFILE, layout.UEFI_ARM64_GRUB, layout.UEFI_ARM64_MOK_MANAGER)
_X86_64_FILES = (*layout.SYSLINUX_FILES, layout.UEFI_BOOTFILE, layout.UEFI_GRUB,
                 layout.UEFI_MOK_MANAGER, layout.IPXE_BOOTFILE)
_X86_64_DIRS = (f"{layout.PXE_CONFIG_DIR}/", f"{layout.IPXE_DIR}/",
                layout.GRUB_HTTP_MODULE.rsplit("/", 1)[0] + "/")


def architecture_of(path: str) -> Architecture | None:
    """The architecture of a client that asks for this boot file, when only one asks for it."""
    path = path.lstrip("/")
    if path in _ARM64_FILES or path.startswith(f"{layout.GRUB_ARM64_DIR}/"):
        return "arm64"
    if path in _X86_64_FILES or path.startswith(_X86_64_DIRS):
        return "x86_64"
    return None


def image_of(path: str) -> str | None:
    """The image a kernel/initrd/squashfs path belongs to (`images/NAME/...`)."""
    parts = path.lstrip("/").split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == "images" else None


def config_mac(path: str) -> str | None:
    """The MAC of a per-host pxelinux file (`pxelinux.cfg/01-aa-bb-...`) or iPXE script
    (`ipxe/hosts/aa-bb-....ipxe`), else None."""
    name = path.lstrip("/")
    prefix = f"{layout.PXE_CONFIG_DIR}/01-"
    if name.startswith(prefix) and len(name) == len(prefix) + 17:
        return name[len(prefix):].replace("-", ":").lower()
    prefix, suffix = f"{layout.IPXE_DIR}/hosts/", ".ipxe"
    if name.startswith(prefix) and name.endswith(suffix) and len(name) == len(prefix) + 17 + 5:
        return name[len(prefix):-len(suffix)].replace("-", ":").lower()
    return None


def parse_dhcpd(text: str) -> DhcpEvent | None:
    for message, pattern in _DHCPD.items():
        match = pattern.match(text)
        if match:
            ip = match.groupdict().get("ip")
            return DhcpEvent(message=message, mac=match["mac"].lower(), ip=ip)  # type: ignore[arg-type]
    return None


def parse_dnsmasq(text: str) -> DhcpEvent | None:
    match = _DNSMASQ.search(text)
    if not match:
        return None
    kind = match["kind"]
    rest = match["rest"]
    if kind == "PXE":
        return DhcpEvent(message="pxe", mac=match["mac"].lower(), ip=match["ip"], mode="proxy",
                         bootfile=rest if rest and rest != "proxy" else None)
    message = kind.removeprefix("DHCP").lower()
    if message not in ("discover", "offer", "request", "ack", "nak", "decline", "release", "inform"):
        return None
    return DhcpEvent(message=message, mac=match["mac"].lower(), ip=match["ip"],  # type: ignore[arg-type]
                     mode="proxy")


def parse_tftpd(text: str) -> FileEvent | TftpError | None:
    match = _RRQ.match(text)
    if match:
        path = match["file"].lstrip("/")
        return FileEvent(protocol="tftp", client=match["ip"], path=path, kind=file_kind(path))
    match = _NAK.match(text)
    if match:
        return TftpError(client=match["ip"], code=int(match["code"]), text=match["text"])
    return None


def parse_access(text: str) -> FileEvent | None:
    match = _ACCESS.match(text)
    if not match:
        return None
    path = match["uri"].split("?", 1)[0].lstrip("/")
    status = int(match["status"])
    return FileEvent(protocol="http", client=match["ip"], path=path, kind=file_kind(path),
                     ok=200 <= status < 300, status=status, bytes=int(match["bytes"]),
                     seconds=float(match["seconds"]), method=match["method"])


def parse_ganesha(text: str) -> NfsMount | None:
    match = _GANESHA.search(text)
    if not match:
        return None
    version = "4.1+" if match["op"] == "CREATE_SESSION" else "4.0"
    return NfsMount(client=match["ip"], version=version, how=match["op"])


def parse_rpcbind(text: str) -> NfsMount | None:
    match = _RPCBIND.search(text)
    if not match:
        return None
    return NfsMount(client=match["ip"], version="3",
                    how=f"MOUNT v{match['vers']}/{match['proto']} lookup ({match['op']})")


def parse_line(service: str, text: str) -> BootEvent | None:
    """The event a supervised service's output line tells, if any (service: the line's prefix)."""
    text = text.strip()
    if service == "dhcpd":
        return parse_dhcpd(text)
    if service == "dnsmasq":
        return parse_dnsmasq(text)
    if service == "tftpd":
        return parse_tftpd(text)
    if service == "http":
        return parse_access(text)
    if service == "nfs":
        return parse_ganesha(text)
    if service == "rpcbind":
        return parse_rpcbind(text)
    return None


def is_tracking_noise(service: str, text: str) -> bool:
    """A debug line the daemons print only because boot tracking turned their debug output on
    (Ganesha's CLIENTID DEBUG, rpcbind -d), and that is no boot event: not worth the container
    log. Their own errors and warnings stay."""
    if service == "nfs":
        return ":CLIENT ID :DEBUG :" in text and parse_ganesha(text) is None
    if service == "rpcbind":
        return parse_rpcbind(text) is None and _RPCBIND_DEBUG.match(text.strip()) is not None
    return False
