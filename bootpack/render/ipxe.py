"""iPXE scripts, rendered from the same menu model as pxelinux and GRUB, for the ipxe chain
(Debian's snponly.efi) and for BIOS clients whose PXE ROM is iPXE (Spec.bios_ipxe_scripts).

DHCP hands iPXE (user class "iPXE") the URL of `ipxe/boot.ipxe`. That script chains the booting
NIC's own file, `ipxe/hosts/<mac with hyphens>.ipxe`, which boots the host's entry at once; a
client without one (HTTP 404) falls through to `ipxe/default.ipxe`, the menu. Everything after
the loader comes over HTTP from the appliance's nginx: scripts, kernels, initrds.

Under UEFI, iPXE hands the initrd to the kernel's EFI stub through its own file system: the
image is named (`initrd --name`) and the command line says `initrd=<name>`, as iPXE's docs do.
Under BIOS iPXE loads the initrd itself and the kernel ignores that word (no `,` size in it).
"""

from __future__ import annotations

import posixpath

from ..bundle import layout
from ..spec.model import Host, Spec
from ..spec.site import Site
from . import quoting
from .common import HEADER
from .menu import BootItem, boot_menu, host_item

SHEBANG = "#!ipxe\n"  # iPXE runs a downloaded file as a script only with this first line
NIC_MAC = "${netX/mac:hexhyp}"  # the NIC iPXE booted from, as 52-54-00-12-34-56
CHOICE = "bootpack-choice"


def _words(value: str) -> str:
    return quoting.ipxe_words(value, "an iPXE script")


def _url(site: Site, rel: str) -> str:
    return f"{site.http_base}/{rel}"


def _boot_lines(site: Site, item: BootItem, bootif: str) -> list[str]:
    """The label's commands: load kernel and initrd over HTTP and boot, or leave to the disk."""
    if item.kernel is None:
        return ["exit"]  # back to the firmware, which boots the next boot option (disk)
    words = _words(item.cmdline).split()
    lines = [f"echo Loading {item.kernel}"]
    if item.initrd is not None:
        name = posixpath.basename(item.initrd)
        words.insert(0, f"initrd={name}")
        lines.append(f"kernel {_url(site, item.kernel)} {' '.join(words)}"
                     f"{' ' + bootif if item.bootif else ''}".rstrip())
        lines.append(f"initrd --name {name} {_url(site, item.initrd)}")
    else:
        lines.append(f"kernel {_url(site, item.kernel)} {' '.join(words)}"
                     f"{' ' + bootif if item.bootif else ''}".rstrip())
    lines.append("boot")
    return lines


def _label(site: Site, item: BootItem, bootif: str) -> str:
    return "\n".join([f":{item.name}", *_boot_lines(site, item, bootif)]) + "\n"


def boot_script(site: Site) -> str:
    """ipxe/boot.ipxe, the URL DHCP hands iPXE: this NIC's host file, else the menu."""
    return (f"{SHEBANG}{HEADER}chain {_url(site, layout.IPXE_DIR)}/hosts/{NIC_MAC}.ipxe || "
            f"chain {_url(site, layout.IPXE_MENU)}\n")


def default_config(spec: Spec, site: Site) -> str:
    """ipxe/default.ipxe: the menu every client without a host file sees."""
    menu = boot_menu(spec, site, "x86_64")  # iPXE runs here on x86-64 only (UEFI and BIOS)
    out = [SHEBANG, HEADER]
    if menu.timeout == 0:
        out.append(f"goto {menu.default}\n")  # boot the default at once, no menu
    else:
        # "--": a title starting with "-" is text, not an option of `menu`
        out.append(f"menu -- {_words(menu.title)}\n")
        out += [f"item {item.name} {_words(item.label)}\n" for item in menu.items]
        # Timeout or Enter: the default; Esc: the default as well (as pxelinux's menu does).
        out.append(f"choose --timeout {menu.timeout * 1000} --default {menu.default} {CHOICE} "
                   f"|| goto {menu.default}\n")
        out.append(f"goto ${{{CHOICE}}}\n")
    out.append("\n")
    # pxelinux's IPAPPEND 2 equivalent: BOOTIF=01-<mac with hyphens> of the NIC that booted.
    out += [_label(site, item, f"BOOTIF=01-{NIC_MAC}") for item in menu.items]
    return "".join(out)


def host_config(spec: Spec, site: Site, host: Host) -> str:
    """A known host boots its entry at once, with the host's cmdline after the entry's."""
    item = host_item(spec, site, host)
    bootif = "BOOTIF=01-" + host.mac.lower().replace(":", "-")
    return (f"{SHEBANG}{HEADER}# host {host.name} ({host.mac})\n"
            + "\n".join(_boot_lines(site, item, bootif)) + "\n")


def render_ipxe(spec: Spec, site: Site) -> dict[str, str]:
    """Paths relative to the TFTP (and HTTP) root -> file contents."""
    files = {layout.IPXE_SCRIPT: boot_script(site), layout.IPXE_MENU: default_config(spec, site)}
    for host in spec.hosts:
        if spec.host_architecture(host) in (None, "x86_64"):  # an arm64 host never runs it
            files[layout.ipxe_host_file(host.mac)] = host_config(spec, site, host)
    return files
