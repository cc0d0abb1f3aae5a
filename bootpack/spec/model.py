"""The spec model: the single source of truth for the spec format.

Every key a user may write is declared here once, with its type, default and description. The
same declarations drive validation, `bootpack schema` (JSON Schema), the README's reference
section (`bootpack.spec.reference`) and the spec digest in bundle.json.

Paths in the spec stay as the user wrote them (relative to the spec file); `LoadedSpec` carries
the folder they are relative to, so the model itself is location-independent and its digest is
the same wherever the spec lives.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

SCHEMA_VERSION = 1

# A spec is untrusted input that ends up in files root-run daemons read, so every field has a
# type that says what it may hold. Patterns are matched whole (re.fullmatch: `$` would also
# accept a trailing newline).
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_HOST_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAC = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}")
_VERSION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+)?")
# A kernel module name as modprobe knows it (dashes and underscores are the same to it).
_DRIVER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_EXPORT_PATH = re.compile(r"(?:/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)+")
_IMAGE_REF = re.compile(
    r"(?:[A-Za-z0-9.-]+(?::[0-9]{1,5})?/)?"  # registry host[:port]/
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"  # path
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"  # :tag, @digest
)
_SPECIAL_TREES = ("/proc", "/sys", "/dev")

CMDLINE_MAX = 1024  # per field; Linux's x86 limit for the whole command line is 2048
TEXT_MAX = 80  # a menu line
LEASE_TIME_MAX = 2**32 - 2  # DHCP's 32-bit lease time; 0xffffffff means "infinite"


@dataclass(frozen=True)
class Kind:
    """What a field holds, in words: the README reference shows it as the field's type."""

    name: str


def _show(value: Any) -> str:
    """A value for a message: its repr, shortened (a 5,000-digit number or a 1 MB string is
    not worth printing), and never failing on deep nesting."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} characters)"


def _control(value: str) -> str | None:
    """The first character of value that is not printable, described, or None."""
    for ch in value:
        if not ch.isprintable():
            return {"\n": "a newline", "\r": "a carriage return", "\t": "a tab",
                    "\x00": "a NUL byte"}.get(ch, f"the character U+{ord(ch):04X}")
    return None


def _text(value: str) -> str:
    bad = _control(value)
    if bad is not None:
        raise ValueError(f"{_show(value)} contains {bad}; use one line of printable characters")
    if len(value) > TEXT_MAX:
        raise ValueError(f"is {len(value)} characters long; keep it to {TEXT_MAX} (one menu line)")
    return value


def _description(value: str) -> str:
    bad = _control(value.replace("\n", " ").replace("\t", " "))
    if bad is not None:
        raise ValueError(f"{_show(value)} contains {bad}; use printable characters and newlines")
    if len(value) > 2000:
        raise ValueError(f"is {len(value)} characters long; keep it to 2000")
    return value


def _cmdline(value: str) -> str:
    for ch in value:
        if not " " <= ch <= "~":
            what = _control(ch) or f"the non-ASCII character {ch!r}"
            raise ValueError(f"{_show(value)} contains {what}; a kernel command line is one line "
                             "of printable ASCII")
    if len(value) > CMDLINE_MAX:
        raise ValueError(f"is {len(value)} characters long; the kernel takes at most 2048 in all, "
                         f"keep this to {CMDLINE_MAX}")
    return value


def _safe_name(value: str) -> str:
    if not _SAFE_NAME.fullmatch(value) or value in {".", ".."}:
        raise ValueError(
            f"{_show(value)} is not a safe name: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it becomes a file name)"
        )
    return value


def _host_name(value: str) -> str:
    if not _HOST_NAME.fullmatch(value) or value.lower() in {"ignore", "infinite"}:
        raise ValueError(
            f"{_show(value)} is not a usable host name: use 1-63 letters, digits or '-', starting "
            "with a letter and not ending with '-' (it becomes the DHCP host name and a file name)"
        )
    return value


def _dns_domain(value: str) -> str:
    labels = value.split(".")
    if len(value) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"{_show(value)} is not a DNS domain name: use dot-separated labels of letters, digits "
            "and '-' (each 1-63 long, not starting or ending with '-'), e.g. 'lab.example'"
        )
    return value


def _mac(value: str) -> str:
    if not _MAC.fullmatch(value.lower()):
        raise ValueError(f"{_show(value)} is not a MAC address (expected six hex pairs, "
                         "e.g. 52:54:00:aa:bb:cc)")
    mac = value.lower().replace("-", ":")
    if mac == "00:00:00:00:00:00":
        raise ValueError(f"{value!r} is the all-zero MAC address; give the NIC's own address")
    if mac == "ff:ff:ff:ff:ff:ff":
        raise ValueError(f"{value!r} is the broadcast MAC address; give the NIC's own address")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"{value!r} is a multicast MAC address (the first byte is odd); "
                         "give the NIC's own (unicast) address")
    return mac


def _version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError(
            f"{_show(value)} is not a usable version: use letters, digits, '.', '_' or '-' "
            "(it becomes a registry tag), e.g. 1.0.0"
        )
    return value


def _package(value: str) -> str:
    if not _PACKAGE.fullmatch(value):
        raise ValueError(f"{_show(value)} is not a package name (e.g. 'openssh-server' or "
                         "'curl=7.88.1-10+deb12u8')")
    return value


def _driver(value: str) -> str:
    if not _DRIVER.fullmatch(value):
        raise ValueError(f"{_show(value)} is not a kernel module name (letters, digits, '_' and "
                         "'-', e.g. 'sfc' or 'mlx5_core')")
    return value


def _image_ref(value: str) -> str:
    if len(value) > 255 or not _IMAGE_REF.fullmatch(value):
        raise ValueError(f"{_show(value)} is not a container image reference (e.g. "
                         "'debian:bookworm-slim' or 'registry.example.com/os/base:1.2')")
    return value


def _relative_path(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty: give a path relative to the spec file")
    bad = _control(value)
    if bad is not None:
        raise ValueError(f"{_show(value)} contains {bad}; give a file path")
    if len(value) > 4096:
        raise ValueError(f"is {len(value)} characters long; no path is that long")
    return value


def _export_path(value: str) -> str:
    value = value.rstrip("/") if len(value) > 1 else value
    if value == "/":
        raise ValueError("'/' is the server's whole file system; name the folder to serve, "
                         "e.g. '/srv/bootpack'")
    parts = value.split("/")[1:]
    if (not value.startswith("/") or len(value) > 1024 or not _EXPORT_PATH.fullmatch(value)
            or any(p in (".", "..") for p in parts)):
        raise ValueError(
            f"{_show(value)} is not a clean absolute path: start with '/', use letters, digits, "
            "'.', '_', '+', '-' and '/' only (no spaces, quotes, commas, colons or parentheses: "
            "it is written into exports, ganesha.conf and the kernel command line), no '..'"
        )
    if any(value == tree or value.startswith(tree + "/") for tree in _SPECIAL_TREES):
        raise ValueError(f"{value!r} is under /{parts[0]}, a kernel file system; serve a folder "
                         "of real files")
    return value


def _unicast(value: Any) -> IPv4Address:
    if isinstance(value, IPv4Address):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{_show(value)} is not an IPv4 address; write it in quotes, "
                         "e.g. '10.0.2.2'")
    try:
        address = IPv4Address(value)
    except ValueError:
        raise ValueError(f"{_show(value)} is not an IPv4 address (e.g. '10.0.2.2')") from None
    if address.is_unspecified or address.is_multicast or address == IPv4Address("255.255.255.255") \
            or address.is_reserved:
        raise ValueError(f"'{address}' is not a unicast address; give a machine's own address")
    return address


def _network(value: Any) -> IPv4Network:
    if isinstance(value, IPv4Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{_show(value)} is not a subnet; write it in quotes, e.g. '10.0.2.0/24'")
    try:
        return IPv4Network(value)
    except ValueError as exc:
        raise ValueError(f"{_show(value)} is not a subnet in CIDR form, e.g. '10.0.2.0/24' "
                         f"({exc})") from None


def _not_bool(value: Any) -> Any:
    # Strict mode still reads `true` as 1 for Literal[1]; a flag is not a number.
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean, not a number")
    return value


SafeName = Annotated[str, AfterValidator(_safe_name), Kind("name")]
HostName = Annotated[str, AfterValidator(_host_name), Kind("host name")]
MacAddress = Annotated[str, AfterValidator(_mac), Kind("MAC address")]
Version = Annotated[str, AfterValidator(_version), Kind("version")]
Package = Annotated[str, AfterValidator(_package), Kind("Debian package")]
Driver = Annotated[str, AfterValidator(_driver), Kind("kernel module name")]
ImageRef = Annotated[str, AfterValidator(_image_ref), Kind("container image reference")]
DnsDomain = Annotated[str, AfterValidator(_dns_domain), Kind("DNS domain name")]
Text = Annotated[str, AfterValidator(_text), Kind("one line of text")]
Description = Annotated[str, AfterValidator(_description), Kind("text")]
Cmdline = Annotated[str, AfterValidator(_cmdline), Kind("kernel command line")]
# GRUB hands a word holding these to the kernel escaped with a backslash, which the kernel does
# not undo: with the uefi chain a command line holding them would boot changed.
GRUB_UNSAFE_CMDLINE = "\"'\\"
# iPXE expands "${...}" in a script's words, again in what an expansion yields, and has no
# quoting: no value can carry it into an iPXE script (render.quoting.ipxe_words escapes the rest).
IPXE_UNSAFE = "${"
SpecPath = Annotated[str, AfterValidator(_relative_path), Kind("path")]
ExportPath = Annotated[str, AfterValidator(_export_path), Kind("absolute path")]
Address = Annotated[IPv4Address, BeforeValidator(_unicast), Kind("IPv4 address")]
Subnet = Annotated[IPv4Network, BeforeValidator(_network), Kind("IPv4 subnet (CIDR)")]
AddressRange = Annotated[tuple[Address, Address], Strict(False)]
RootMode = Literal["ramdisk", "nfs", "live", "local"]
DhcpMode = Literal["server", "proxy", "none"]
# A boot chain: which loader a client gets, chosen by its DHCP option 93 (client architecture).
#   bios: pxelinux.0 (option 93 = 0);
#   uefi: x86-64 UEFI (option 93 = 7 or 9; 16 = UEFI HTTP boot): Debian's signed shim -> network
#         GRUB -> kernel, over TFTP; boots with Secure Boot on or off.
#   ipxe: x86-64 UEFI without Secure Boot: Debian's iPXE (snponly.efi, unsigned) -> iPXE script
#         -> kernel and initrd over HTTP; the one UEFI chain that works behind a proxy DHCP.
#   uefi-arm64: arm64 UEFI (option 93 = 11): Debian's signed arm64 shim -> network GRUB -> kernel.
Chain = Literal["bios", "uefi", "ipxe", "uefi-arm64"]
CHAINS: tuple[Chain, ...] = ("bios", "uefi", "ipxe", "uefi-arm64")
# The CPU an image's kernel and root tree are built for, named as `uname -m` names it (except
# aarch64, which Debian, Docker and the firmware world call arm64).
Architecture = Literal["x86_64", "arm64"]
RamdiskCompression = Literal["zstd", "lz4"]
SquashfsCompression = Literal["zstd", "lz4"]
ARCHITECTURES: tuple[Architecture, ...] = ("x86_64", "arm64")
# What `platform.machine()` says on each architecture (Linux, BSDs, macOS).
_MACHINES: dict[str, Architecture] = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64",
                                      "arm64": "arm64"}


def build_host_architecture() -> Architecture:
    """The architecture of the machine running bootpack: an image's default."""
    machine = platform.machine().lower()
    # Anything else (a 32-bit or RISC-V build host) has no default it could build for here.
    return _MACHINES.get(machine, "x86_64")


def chain_architecture(chain: Chain) -> Architecture:
    """The architecture of the machines a chain boots (every chain but uefi-arm64 is x86-64)."""
    return "arm64" if chain == "uefi-arm64" else "x86_64"


def default_chains(architectures: set[Architecture]) -> list[Chain]:
    """loaders.chains when the spec does not set it: every chain of the architectures of the
    images entries boot (x86-64 when there is none, e.g. only local-boot entries)."""
    chains: list[Chain] = []
    if "x86_64" in architectures or not architectures:
        chains += ["bios", "uefi"]
    if "arm64" in architectures:
        chains.append("uefi-arm64")
    return chains


def _chain_list(value: list[Chain]) -> list[Chain]:
    if len(set(value)) != len(value):
        raise ValueError(f"{value!r} names a chain twice; list each chain once")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class Bundle(_Section):
    """What this bundle is called and which version it is."""

    name: SafeName = Field(description="Bundle name; names the archive and the registry repository.")
    version: Version = Field(description="Bundle version, e.g. 1.0.0; becomes the registry tag.")
    description: Description = Field("", description="Free text shown in bundle.json.")


class Server(_Section):
    """The boot server as clients see it."""

    address: Address = Field(
        description="Address where clients reach TFTP, HTTP and NFS (next-server)."
    )
    http_port: int = Field(80, ge=1, le=65535, description="Port of the HTTP server for live images.")
    root: ExportPath = Field(
        "/srv/bootpack",
        description="Where the bundle directory lives on the boot server; NFS exports are under it.",
    )


class Dhcp(_Section):
    """How clients get an address and learn where to boot from."""

    mode: DhcpMode = Field(
        "server",
        description="server: hand out addresses; proxy: only boot data, an existing DHCP server "
        "keeps giving addresses; none: no DHCP snippets (configure your own server).",
    )
    subnet: Subnet | None = Field(
        None, description="Client subnet, e.g. 10.0.2.0/24. Needed for server and proxy modes and NFS."
    )
    range: AddressRange | None = Field(
        None, description="First and last address of the dynamic pool (server mode)."
    )
    router: Address | None = Field(None, description="Default gateway handed to clients.")
    dns: list[Address] = Field(default_factory=list, max_length=8,
                               description="DNS servers handed to clients.")
    domain: DnsDomain | None = Field(None, description="Domain name handed to clients.")
    lease_time: int = Field(3600, ge=120, le=LEASE_TIME_MAX, description="Lease time in seconds.")


class Menu(_Section):
    """The boot menu unknown clients see."""

    title: Text = Field("bootpack", min_length=1, description="Menu title.")
    timeout: int = Field(
        5, ge=0, le=3600, description="Seconds before the default entry boots; 0 boots it at once."
    )
    default: SafeName | None = Field(None, description="Entry booted on timeout (default: the first).")


class Loaders(_Section):
    """Which boot chains the bundle carries; DHCP hands each client the one for its firmware."""

    chains: Annotated[list[Chain], AfterValidator(_chain_list)] = Field(
        default=["bios", "uefi"], min_length=1,
        description="bios: pxelinux.0 for legacy BIOS clients (DHCP option 93 = 0); uefi: x86-64 "
        "UEFI clients (option 93 = 7 or 9, and 16 for UEFI HTTP boot) get Debian's signed shim, "
        "which loads Debian's signed network GRUB, which boots the entry's kernel over TFTP: it "
        "boots with Secure Boot on (a signed kernel is then needed) or off; ipxe: Debian's iPXE "
        "(snponly.efi, not signed: Secure Boot off only) for x86-64 UEFI, kernel and initrd over "
        "HTTP. With both uefi and ipxe, option 93 = 7/9 clients get uefi in server mode and ipxe "
        "in proxy mode (Debian's GRUB cannot boot behind a proxy DHCP), and UEFI HTTP boot "
        "(option 93 = 16) gets ipxe; hosts[].chain overrides. uefi-arm64: arm64 "
        "UEFI clients (option 93 = 11) get Debian's signed arm64 shim and network GRUB. "
        "Default: bios and uefi when an entry boots an x86_64 image (or none boots an image), "
        "uefi-arm64 when one boots an arm64 image.",
    )
    bios_ipxe: bool = Field(
        True, description="With the bios chain: BIOS clients whose PXE ROM is iPXE (user class "
        "iPXE: QEMU, many flashed NICs) get the bundle's iPXE scripts, and iPXE fetches kernel "
        "and initrd itself over HTTP, about 4x faster than pxelinux.0 through it. The scripts "
        "carry the menu title, labels and command lines, which must then not hold ${. false: "
        "those clients get plain pxelinux.0 and its menu (other BIOS clients always get "
        "lpxelinux.0).")




class Image(_Section):
    """An OS to boot: kernel files given by path, or a container image bootpack makes bootable.

    Give exactly one source: `kernel` (with `initrd`/`squashfs` files), `from` or `dockerfile`.
    Paths are relative to the spec file."""

    kernel: SpecPath | None = Field(
        None, description="Kernel file (x86_64: bzImage/vmlinuz; arm64: Image, or an EFI zboot "
        "image).")
    initrd: SpecPath | None = Field(None, description="Initramfs file; optional for nfs and local entries.")
    squashfs: SpecPath | None = Field(
        None, description="Root file system as a squashfs, served over HTTP for live entries."
    )
    from_: ImageRef | None = Field(
        None, alias="from",
        description="Container image reference (local, else pulled), e.g. 'debian:bookworm-slim'. "
        "bootpack installs what the entries need, builds the netboot initrds for the image's "
        "kernel (its own busybox init for live, dracut's for nfs) and packs its root tree for "
        "live, nfs and ramdisk entries. Debian-family images.",
    )
    dockerfile: SpecPath | None = Field(
        None, description="Dockerfile to build the image from (context: its folder); as `from`."
    )
    packages: list[Package] = Field(
        default_factory=list,
        description="Extra packages installed in a from/dockerfile image (e.g. a kernel: "
        "'linux-image-amd64').",
    )
    overlay: SpecPath | None = Field(
        None, description="Folder copied over the root tree of a from/dockerfile image (owned by root)."
    )
    drivers: list[Driver] = Field(
        default_factory=list,
        description="Extra kernel modules (e.g. a NIC driver: 'sfc') for the netboot initrds (live "
        "and nfs) of a from/dockerfile image, with their dependencies. The initrds carry only the "
        "network drivers bootpack supports (virtio_net, e1000, e1000e, igb, igc, ixgbe, i40e, ice, "
        "r8169, tg3, bnxt_en, mlx4_en, mlx5_core, vmxnet3, hv_netvsc, xen_netfront), not every "
        "module of the kernel.",
    )
    squashfs_compression: SquashfsCompression = Field(
        "zstd",
        description="How the live squashfs of a from/dockerfile image is compressed. zstd (1 MB "
        "blocks): the smallest; lz4 (128 KB blocks): about 40% bigger, but the booted system "
        "reads it with less CPU (docs/speed.md).",
    )
    ramdisk_compression: RamdiskCompression = Field(
        "zstd",
        description="How the ramdisk of a from/dockerfile image is compressed. zstd: the "
        "smallest; lz4: about half again as big but unpacked by the kernel about twice as fast "
        "(for clients whose CPU, not the network, is the slow part; docs/speed.md).",
    )
    architecture: Architecture = Field(
        default_factory=build_host_architecture,
        description="CPU architecture of the image (default: the build host's). Its entries boot "
        "only on machines of this architecture; from/dockerfile images are built for it "
        "(docker build --platform linux/arm64 through binfmt_misc on an x86-64 host).",
    )

    @property
    def container(self) -> bool:
        """Built from a container image (from/dockerfile) rather than given as files."""
        return self.from_ is not None or self.dockerfile is not None


class Entry(_Section):
    """One menu item: an image booted with a root mode and a kernel command line."""

    name: SafeName = Field(description="Entry name, used by menu.default and hosts[].entry.")
    label: Text | None = Field(None, description="Text shown in the menu (default: the name).")
    image: SafeName | None = Field(None, description="Image to boot (not needed for root = local).")
    root: RootMode = Field(
        "ramdisk",
        description="ramdisk: the initrd is the root (for from/dockerfile images: the whole root "
        "tree as an initramfs); nfs: root over NFS; live: a squashfs fetched over HTTP into RAM "
        "under a RAM overlay (by bootpack's own initrd for from/dockerfile images, by dracut's "
        "livenet for given files); "
        "local: boot the local disk.",
    )
    cmdline: Cmdline = Field("", description="Extra kernel command line.")
    nfs_path: ExportPath | None = Field(
        None,
        description="nfs: absolute path of the root tree on the server "
        "(default: <server.root>/roots/<image>).",
    )
    nfs_version: Literal[3, 4] = Field(3, description="nfs: NFS protocol version for the root mount.")
    secure_boot: bool = Field(
        False,
        description="Booted by UEFI machines with Secure Boot on: `bootpack validate` warns when "
        "the image's kernel carries no signature (such a kernel is refused under Secure Boot "
        "unless its key is enrolled as a MOK).",
    )
    report_up: bool = Field(
        True,
        description="Add bootpack.report=URL to the command line: images bootpack builds then "
        "report `up` to the appliance once booted (`bootpack status`); false turns it off.",
    )

    @property
    def menu_label(self) -> str:
        return self.label or self.name


class Host(_Section):
    """A known machine: its own pxelinux config boots its entry, DHCP gives it a fixed address."""

    name: HostName = Field(description="Host name (DHCP host name).")
    mac: MacAddress = Field(description="MAC address of the booting NIC.")
    ip: Address | None = Field(None, description="Fixed address (outside the dynamic range).")
    entry: SafeName | None = Field(None, description="Entry this host boots (default: menu.default).")
    cmdline: Cmdline = Field("", description="Appended to the entry's command line for this host.")
    writable_root: bool = Field(
        False,
        description="nfs entries: boot this host from its own writable copy of the image's root "
        "tree (<server.root>/hosts/<name>), exported read-write to this host's ip only (needs ip). "
        "`bootpack serve` makes the copy on first start; every other export stays read-only.",
    )
    architecture: Architecture | None = Field(
        None, description="The host's CPU architecture (default: its entry's, or its chain's). "
        "validate refuses an entry or chain of another architecture; without an entry the host "
        "boots the menu default of its architecture.",
    )
    chain: Chain | None = Field(
        None,
        description="Force this host's boot chain (one of loaders.chains) whatever architecture "
        "its firmware reports in DHCP option 93 (default: chosen by option 93).",
    )
    report_up: bool | None = Field(
        None, description="Overrides the entry's report_up for this host (false: no `up` report)."
    )


class Spec(_Section):
    """A bootpack spec (TOML)."""

    schema_: Annotated[Literal[1], BeforeValidator(_not_bool)] = Field(
        alias="schema", description="Spec format version; must be 1."
    )
    bundle: Bundle
    server: Server
    dhcp: Dhcp = Field(default_factory=Dhcp)  # type: ignore[arg-type]
    menu: Menu = Field(default_factory=Menu)  # type: ignore[arg-type]
    loaders: Loaders = Field(default_factory=Loaders)  # type: ignore[arg-type]
    images: dict[SafeName, Image] = Field(default_factory=dict, description="Images by name.")
    entries: list[Entry] = Field(min_length=1, description="Menu entries, in menu order.")
    hosts: list[Host] = Field(default_factory=list, description="Known machines.")

    @model_validator(mode="after")
    def _default_chains(self) -> Spec:
        # Unset loaders.chains follows the images' architectures. Set here, once, so every reader
        # of loaders.chains (and the spec.json a bundle carries) sees the same list.
        if "chains" not in self.loaders.model_fields_set:
            used = {self.images[e.image].architecture for e in self.entries
                    if e.image is not None and e.image in self.images}
            chains = default_chains(used)
            object.__setattr__(self, "loaders", Loaders(chains=chains,
                                                        bios_ipxe=self.loaders.bios_ipxe))
        return self

    def entry(self, name: str) -> Entry:
        return next(e for e in self.entries if e.name == name)

    @property
    def default_entry(self) -> Entry:
        return self.entry(self.menu.default) if self.menu.default else self.entries[0]

    def entry_architecture(self, entry: Entry) -> Architecture | None:
        """The architecture an entry boots on: its image's (None: any, e.g. a local-disk entry)."""
        image = self.images.get(entry.image) if entry.image is not None else None
        return image.architecture if image is not None else None

    def fits(self, entry: Entry, architecture: Architecture) -> bool:
        arch = self.entry_architecture(entry)
        return arch is None or arch == architecture

    def architecture_entries(self, architecture: Architecture) -> list[Entry]:
        """The entries a machine of this architecture can boot, in menu order."""
        return [e for e in self.entries if self.fits(e, architecture)]

    def architecture_default(self, architecture: Architecture) -> Entry | None:
        """menu.default when it fits the architecture, else the first entry that does."""
        if self.fits(self.default_entry, architecture):
            return self.default_entry
        return next(iter(self.architecture_entries(architecture)), None)

    def host_architecture(self, host: Host) -> Architecture | None:
        """The host's own, else its forced chain's, else its entry's (None: not known)."""
        if host.architecture is not None:
            return host.architecture
        if host.chain is not None:
            return chain_architecture(host.chain)
        entry = next((e for e in self.entries if e.name == host.entry), None)
        return self.entry_architecture(entry) if entry is not None else None

    def ipxe_unsafe_texts(self) -> list[tuple[str, str]]:
        """(where, text) of each text an iPXE script would carry that holds IPXE_UNSAFE: the
        menu title, entries' labels and command lines, hosts' command lines."""
        owners = [("menu.title", self.menu.title)]
        owners += [(f"entries[{i}].{f}", v) for i, e in enumerate(self.entries)
                   for f, v in (("cmdline", e.cmdline), ("label", e.label or ""))]
        owners += [(f"hosts[{i}].cmdline", h.cmdline) for i, h in enumerate(self.hosts)]
        return [(where, text) for where, text in owners if IPXE_UNSAFE in text]

    @property
    def bios_ipxe_scripts(self) -> bool:
        """Whether BIOS clients whose PXE ROM is iPXE run the bundle's iPXE scripts."""
        return "bios" in self.loaders.chains and self.loaders.bios_ipxe

    @property
    def ipxe_scripts(self) -> bool:
        """Whether the bundle carries iPXE scripts (for the ipxe chain or BIOS iPXE ROMs)."""
        return "ipxe" in self.loaders.chains or self.bios_ipxe_scripts

    def host_entry(self, host: Host) -> Entry:
        if host.entry:
            return self.entry(host.entry)
        arch = self.host_architecture(host)
        return (self.architecture_default(arch) if arch else None) or self.default_entry
