"""GRUB configs for the UEFI chains, x86-64 and arm64 (shim -> Debian's signed network GRUB).

Debian's network GRUB reads only `(tftp,<next-server>)/grub/grub.cfg`: it never looks for a
per-MAC file itself, and `[ -e ]` on the TFTP device is always false. So `grub/grub.cfg` first
compares `$net_default_mac` (the booting NIC, lower case with colons) with each known host and
hands a match to that host's own file with `configfile`; everyone else falls through to the
default menu of their architecture, rendered from the same `BootMenu` as pxelinux's. x86-64 and
arm64 GRUB both read `grub/grub.cfg`: when both chains are carried, it sends arm64 GRUB
(`$grub_cpu` = arm64) on to `grub/arm64-efi/menu.cfg` and shows the x86-64 menu itself.

Kernel and initrd come over HTTP when GRUB can load its http module (served next to grub.cfg,
from the same GRUB build), and over TFTP from the same server when it cannot: Debian's signed
GRUB has no http module built in, and under Secure Boot it refuses to load one.
"""

from __future__ import annotations

from ..bundle import layout
from ..errors import BootpackError
from ..spec.model import GRUB_UNSAFE_CMDLINE, Architecture, Host, Spec
from ..spec.site import Site
from . import quoting
from .common import HEADER
from .menu import BootItem, boot_menu, host_item


def quote(value: str) -> str:
    """One GRUB word, taken literally: single quotes (no `$` expansion), a quote as '\\''."""
    return "'" + quoting.grub(value).replace("'", "'\\''") + "'"


def cmdline_words(item: BootItem) -> list[str]:
    """The command line as GRUB words, one per kernel parameter.

    GRUB hands each word to the kernel as is, but puts a word with a space in double quotes and
    escapes quotes and backslashes with a backslash, which the kernel does not undo: such a
    command line would reach the kernel changed, so it is refused rather than rendered."""
    words = item.cmdline.split()
    for word in words:
        if any(c in word for c in GRUB_UNSAFE_CMDLINE):
            raise BootpackError(
                f"entry {item.name}: command line word {word!r}: GRUB (the uefi chain) would pass "
                "its quotes or backslashes to the kernel escaped, unlike pxelinux; drop them or "
                "remove \"uefi\" from loaders.chains")
    return words


FILES = "bootpack_files"  # GRUB variable: where kernels and initrds come from


def _files_source(site: Site) -> str:
    """HTTP if GRUB may load http.mod (Secure Boot off), else TFTP from the boot server."""
    port = "" if site.http_port == 80 else f":{site.http_port}"
    # Under Secure Boot GRUB sets lockdown=y and refuses modules (insmod still counts as done).
    return (f'set {FILES}=\nif [ "$lockdown" != "y" ]; then '
            f"if insmod http; then set {FILES}=(http,{site.address}{port}); fi; fi\n")


def _menuentry(item: BootItem, bootif: str) -> str:
    lines = [f"menuentry {quote(item.label)} --id {quote(item.name)} {{"]
    if item.kernel is None:
        lines.append("  exit")  # back to the firmware, which boots the next boot option (disk)
    else:
        args = [quote(w) for w in cmdline_words(item)] + ([bootif] if item.bootif else [])

        def load(source: str) -> str:
            loads = [f"linux {source}/{item.kernel} {' '.join(args)}".rstrip()]
            if item.initrd is not None:
                loads.append(f"initrd {source}/{item.initrd}")
            return "; ".join(loads)

        lines.append("  echo " + quote(f"Loading {item.kernel}"))
        # HTTP when GRUB could load http.mod; if the HTTP server does not answer, TFTP.
        lines.append(f"  if {load('$' + FILES)}; then true; else {load('')}; fi")
    lines.append("}")
    return "\n".join(lines) + "\n"


def grub_architectures(spec: Spec) -> list[Architecture]:
    """The architectures whose GRUB reads grub/grub.cfg: one per UEFI chain carried."""
    archs: list[Architecture] = []
    if "uefi" in spec.loaders.chains:
        archs.append("x86_64")
    if "uefi-arm64" in spec.loaders.chains:
        archs.append("arm64")
    return archs


def _menu(spec: Spec, site: Site, architecture: Architecture) -> list[str]:
    menu = boot_menu(spec, site, architecture)
    out = [f"set timeout={menu.timeout}\n", f"set default={quote(menu.default)}\n",
            "set timeout_style=menu\n" if menu.timeout else "set timeout_style=hidden\n", "\n"]
    # pxelinux's IPAPPEND 2 equivalent; dracut reads BOOTIF with colons as well as dashes.
    out += [_menuentry(item, "BOOTIF=01-$net_default_mac") for item in menu.items]
    return out


def default_config(spec: Spec, site: Site) -> str:
    """grub/grub.cfg: per-host dispatch by MAC, then the menu of the client's architecture."""
    archs = grub_architectures(spec)
    out = [HEADER, _files_source(site)]
    for host in spec.hosts:
        out.append(f'if [ "$net_default_mac" = {quote(host.mac)} ]; then '
                   f"configfile {quote('/' + layout.grub_host_file(host.mac))}; fi\n")
    if len(archs) > 1:
        # GRUB sets $grub_cpu to its build's CPU: x86_64 or arm64.
        out.append(f'if [ "$grub_cpu" = "arm64" ]; then '
                   f"configfile {quote('/' + layout.GRUB_ARM64_MENU)}; fi\n")
    return "".join(out + _menu(spec, site, archs[0]))


def arm64_menu_config(spec: Spec, site: Site) -> str:
    """grub/arm64-efi/menu.cfg: the arm64 menu, when grub.cfg shows the x86-64 one."""
    # configfile starts a new context without grub.cfg's variables: set the files source again.
    return "".join([HEADER, "# arm64 clients\n", _files_source(site), *_menu(spec, site, "arm64")])


def host_config(spec: Spec, site: Site, host: Host) -> str:
    """A known host boots its entry at once, with the host's cmdline after the entry's."""
    item = host_item(spec, site, host)
    bootif = "BOOTIF=01-" + host.mac.replace(":", "-")
    return (f"{HEADER}# host {host.name} ({host.mac})\n{_files_source(site)}set timeout=0\n"
            f"set timeout_style=hidden\nset default={quote(item.name)}\n\n{_menuentry(item, bootif)}")


def render_grub(spec: Spec, site: Site) -> dict[str, str]:
    """Paths relative to the TFTP root -> file contents."""
    files = {layout.GRUB_CONFIG: default_config(spec, site)}
    if len(grub_architectures(spec)) > 1:
        files[layout.GRUB_ARM64_MENU] = arm64_menu_config(spec, site)
    for host in spec.hosts:
        files[layout.grub_host_file(host.mac)] = host_config(spec, site, host)
    return files
