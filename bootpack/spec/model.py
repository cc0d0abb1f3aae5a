"""The spec model: the single source of truth for the spec format.

Every key a user may write is declared here once, with its type, default and description. The
same declarations drive validation, `bootpack schema` (JSON Schema), the README's reference
section (`bootpack.spec.reference`) and the spec digest in bundle.json.

Paths in the spec stay as the user wrote them (relative to the spec file); `LoadedSpec` carries
the folder they are relative to, so the model itself is location-independent and its digest is
the same wherever the spec lives.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_MAC = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
_VERSION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")


def _safe_name(value: str) -> str:
    if not _SAFE_NAME.match(value) or value in {".", ".."}:
        raise ValueError(
            f"{value!r} is not a safe name: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it becomes a file name)"
        )
    return value


def _mac(value: str) -> str:
    if not _MAC.match(value.lower()):
        raise ValueError(f"{value!r} is not a MAC address (expected six hex pairs, e.g. 52:54:00:aa:bb:cc)")
    return value.lower().replace("-", ":")


def _version(value: str) -> str:
    if not _VERSION.match(value):
        raise ValueError(
            f"{value!r} is not a usable version: use letters, digits, '.', '_' or '-' "
            "(it becomes a registry tag), e.g. 1.0.0"
        )
    return value


def _relative_path(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty: give a path relative to the spec file")
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/") or "/../" in f"{value}/":
        raise ValueError(f"{value!r} is not an absolute path without '..'")
    return value.rstrip("/") or "/"


SafeName = Annotated[str, AfterValidator(_safe_name)]
MacAddress = Annotated[str, AfterValidator(_mac)]
Version = Annotated[str, AfterValidator(_version)]
SpecPath = Annotated[str, AfterValidator(_relative_path)]
ServerPath = Annotated[str, AfterValidator(_absolute_path)]
RootMode = Literal["ramdisk", "nfs", "live", "local"]
DhcpMode = Literal["server", "proxy", "none"]
# A boot chain: which loader a client gets, chosen by its DHCP option 93 (client architecture).
#   bios: pxelinux.0 (option 93 = 0);
#   uefi: x86-64 UEFI (option 93 = 7 or 9; 16 = UEFI HTTP boot): Debian's signed shim -> network
#         GRUB -> kernel, over TFTP; boots with Secure Boot on or off.
Chain = Literal["bios", "uefi"]
CHAINS: tuple[Chain, ...] = ("bios", "uefi")


def _chain_list(value: list[Chain]) -> list[Chain]:
    if len(set(value)) != len(value):
        raise ValueError(f"{value!r} names a chain twice; list each chain once")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Bundle(_Section):
    """What this bundle is called and which version it is."""

    name: SafeName = Field(description="Bundle name; names the archive and the registry repository.")
    version: Version = Field(description="Bundle version, e.g. 1.0.0; becomes the registry tag.")
    description: str = Field("", description="Free text shown in bundle.json.")


class Server(_Section):
    """The boot server as clients see it."""

    address: IPv4Address = Field(
        description="Address where clients reach TFTP, HTTP and NFS (next-server)."
    )
    http_port: int = Field(80, ge=1, le=65535, description="Port of the HTTP server for live images.")
    root: ServerPath = Field(
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
    subnet: IPv4Network | None = Field(
        None, description="Client subnet, e.g. 10.0.2.0/24. Needed for server and proxy modes and NFS."
    )
    range: tuple[IPv4Address, IPv4Address] | None = Field(
        None, description="First and last address of the dynamic pool (server mode)."
    )
    router: IPv4Address | None = Field(None, description="Default gateway handed to clients.")
    dns: list[IPv4Address] = Field(default_factory=list, description="DNS servers handed to clients.")
    domain: str | None = Field(None, description="Domain name handed to clients.")
    lease_time: int = Field(3600, ge=60, description="Lease time in seconds.")


class Menu(_Section):
    """The boot menu unknown clients see."""

    title: str = Field("bootpack", description="Menu title.")
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
        "boots with Secure Boot on (a signed kernel is then needed) or off.",
    )


def _package(value: str) -> str:
    if not _PACKAGE.match(value):
        raise ValueError(f"{value!r} is not a package name (e.g. 'openssh-server' or "
                         "'curl=7.88.1-10+deb12u8')")
    return value


Package = Annotated[str, AfterValidator(_package)]


class Image(_Section):
    """An OS to boot: kernel files given by path, or a container image bootpack makes bootable.

    Give exactly one source: `kernel` (with `initrd`/`squashfs` files), `from` or `dockerfile`.
    Paths are relative to the spec file."""

    kernel: SpecPath | None = Field(None, description="Kernel file (bzImage/vmlinuz).")
    initrd: SpecPath | None = Field(None, description="Initramfs file; optional for nfs and local entries.")
    squashfs: SpecPath | None = Field(
        None, description="Root file system as a squashfs, served over HTTP for live entries."
    )
    from_: str | None = Field(
        None, alias="from", min_length=1,
        description="Container image reference (local, else pulled), e.g. 'debian:bookworm-slim'. "
        "bootpack installs what the entries need, builds a dracut netboot initrd for the image's "
        "kernel and packs its root tree for live, nfs and ramdisk entries. Debian-family images.",
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

    @property
    def container(self) -> bool:
        """Built from a container image (from/dockerfile) rather than given as files."""
        return self.from_ is not None or self.dockerfile is not None


class Entry(_Section):
    """One menu item: an image booted with a root mode and a kernel command line."""

    name: SafeName = Field(description="Entry name, used by menu.default and hosts[].entry.")
    label: str | None = Field(None, description="Text shown in the menu (default: the name).")
    image: SafeName | None = Field(None, description="Image to boot (not needed for root = local).")
    root: RootMode = Field(
        "ramdisk",
        description="ramdisk: the initrd is the root (for from/dockerfile images: the whole root "
        "tree as an initramfs); nfs: root over NFS; live: dracut livenet squashfs over HTTP; "
        "local: boot the local disk.",
    )
    cmdline: str = Field("", description="Extra kernel command line.")
    nfs_path: ServerPath | None = Field(
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

    @property
    def menu_label(self) -> str:
        return self.label or self.name


class Host(_Section):
    """A known machine: its own pxelinux config boots its entry, DHCP gives it a fixed address."""

    name: SafeName = Field(description="Host name.")
    mac: MacAddress = Field(description="MAC address of the booting NIC.")
    ip: IPv4Address | None = Field(None, description="Fixed address (outside the dynamic range).")
    entry: SafeName | None = Field(None, description="Entry this host boots (default: menu.default).")
    cmdline: str = Field("", description="Appended to the entry's command line for this host.")
    writable_root: bool = Field(
        False,
        description="nfs entries: boot this host from its own writable copy of the image's root "
        "tree (<server.root>/hosts/<name>), exported read-write to this host's ip only (needs ip). "
        "`bootpack serve` makes the copy on first start; every other export stays read-only.",
    )
    chain: Chain | None = Field(
        None,
        description="Force this host's boot chain (one of loaders.chains) whatever architecture "
        "its firmware reports in DHCP option 93 (default: chosen by option 93).",
    )


class Spec(_Section):
    """A bootpack spec (TOML)."""

    schema_: Literal[1] = Field(
        alias="schema", description="Spec format version; must be 1."
    )
    bundle: Bundle
    server: Server
    dhcp: Dhcp = Field(default_factory=Dhcp)  # type: ignore[arg-type]
    menu: Menu = Field(default_factory=Menu)  # type: ignore[arg-type]
    loaders: Loaders = Field(default_factory=Loaders)
    images: dict[SafeName, Image] = Field(default_factory=dict, description="Images by name.")
    entries: list[Entry] = Field(min_length=1, description="Menu entries, in menu order.")
    hosts: list[Host] = Field(default_factory=list, description="Known machines.")

    def entry(self, name: str) -> Entry:
        return next(e for e in self.entries if e.name == name)

    @property
    def default_entry(self) -> Entry:
        return self.entry(self.menu.default) if self.menu.default else self.entries[0]

    def host_entry(self, host: Host) -> Entry:
        return self.entry(host.entry) if host.entry else self.default_entry
