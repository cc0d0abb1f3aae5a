"""OS families bootpack can make network-bootable, recognised from the image's /etc/os-release.

A family says how to install packages in the image and which packages each boot need brings.
Only the Debian family (Debian, Ubuntu and other ID_LIKE=debian systems) is supported today; a new
family is one more `Family` in FAMILIES with its package manager commands and package names.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from ..errors import BootpackError

# What an image must carry for each need of its entries.
DRACUT = "dracut"  # a dracut-built netboot initrd (nfs)
NFS = "nfs"  # dracut nfs root


@dataclass(frozen=True)
class Family:
    name: str
    ids: frozenset[str]  # os-release ID or ID_LIKE words that select this family
    update: str  # shell: refresh package lists
    install: str  # shell prefix: install packages (names appended)
    download: str  # shell prefix: fetch packages' files into the current folder (names appended)
    unpack: str  # shell: unpack the package file "$pkg" into the folder "$dest"
    clean: str  # shell: drop package lists and caches
    # the package whose /bin/busybox (static) runs bootpack's live init; it is unpacked into the
    # initrd only, never installed in the image
    static_busybox: str = ""
    packages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # suggested when an image has no kernel, by architecture
    kernel_packages: dict[str, str] = field(default_factory=dict)

    def kernel_package(self, architecture: str) -> str:
        return self.kernel_packages.get(architecture, "a kernel package")

    def install_script(self, packages: list[str]) -> str:
        if not packages:
            return ""
        return f"{self.update}\n{self.install} {shlex.join(packages)}\n"

    def unpack_script(self, packages: list[str], dest: str) -> str:
        """Shell: fetch packages (package lists already updated) and unpack them into dest
        without installing them."""
        return "\n".join([
            f"mkdir -p {dest} /tmp/bootpack-debs && cd /tmp/bootpack-debs",
            f"{self.download} {shlex.join(packages)}",
            f"for pkg in *; do dest={dest}; {self.unpack}; done",
            "cd / && rm -rf /tmp/bootpack-debs",
        ])

    def needs(self, modes: set[str]) -> list[str]:
        """Packages the given needs bring, in a stable order without repeats."""
        out: list[str] = []
        for need in (DRACUT, NFS):
            if need in modes:
                out += [p for p in self.packages.get(need, ()) if p not in out]
        return out


DEBIAN = Family(
    name="debian",
    ids=frozenset({"debian"}),
    update="apt-get update -q",
    install="DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
    "-o Dpkg::Options::=--force-confold",
    download="apt-get download -q -o APT::Sandbox::User=root",
    unpack='dpkg-deb -x "$pkg" "$dest"',
    clean="apt-get clean && rm -rf /var/lib/apt/lists/*",
    packages={
        # network-legacy silently drops out without isc-dhcp-client, arping and pgrep (procps);
        # the network module pulls systemd-networkd, which needs dbus (field notes).
        DRACUT: ("dracut", "dracut-network", "dbus", "isc-dhcp-client", "iputils-arping", "procps",
                 "zstd"),  # zstd: dracut --compress zstd falls back to gzip without it
        # netbase: /etc/protocols, /etc/services and /etc/rpc. Without them dracut's nfs module
        # leaves them out of the initrd and mount.nfs cannot resolve "tcp" to reach rpcbind and
        # mountd: an NFSv3 root fails with "mount.nfs: Protocol not supported".
        NFS: ("nfs-common", "netbase"),
    },
    kernel_packages={"x86_64": "linux-image-amd64", "arm64": "linux-image-arm64"},
    static_busybox="busybox-static",
)

FAMILIES: tuple[Family, ...] = (DEBIAN,)


def parse_os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value)
        except ValueError:
            words = [value]
        values[key.strip()] = " ".join(words)
    return values


def detect_family(os_release: str, where: str) -> Family:
    """The family of an image from its os-release text; a clear error when unsupported."""
    values = parse_os_release(os_release)
    words = {values.get("ID", "")} | set(values.get("ID_LIKE", "").split())
    for family in FAMILIES:
        if family.ids & words:
            return family
    name = values.get("PRETTY_NAME") or values.get("ID") or "an unknown system (no os-release)"
    supported = ", ".join(f"{f.name} (os-release ID or ID_LIKE {'/'.join(sorted(f.ids))})"
                          for f in FAMILIES)
    raise BootpackError(f"{where}: {name} is not supported for network boot; supported image "
                        f"families: {supported}. Base the image on e.g. debian:bookworm-slim")
