"""The one menu model every loader renders: which entries, which default, which timeout, and for
each entry its kernel, initrd and full command line (root mode first, then the user's words).

pxelinux (BIOS) and GRUB (UEFI) configs are both rendered from `boot_menu` and `host_item`, so a
label, a default, a timeout and a command line mean the same on every firmware. A menu is for one
architecture: it lists the entries that boot there, and its default is menu.default when that
fits, else the first entry that does.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bundle import layout
from ..spec.model import Architecture, Entry, Host, Spec
from ..spec.site import Site
from . import quoting
from .nfs import has_writable_root, host_root_path, nfs_root_path


@dataclass(frozen=True)
class BootItem:
    """One bootable choice, loader-neutral. Paths are relative to the TFTP root."""

    name: str
    label: str
    kernel: str | None  # None: boot the local disk
    initrd: str | None
    cmdline: str
    bootif: bool  # the loader appends BOOTIF=<mac of the booting NIC> (nfs and live roots)


@dataclass(frozen=True)
class BootMenu:
    title: str
    timeout: int  # seconds; 0 boots the default at once, without a menu
    default: str  # name of the default item
    items: tuple[BootItem, ...]


def entry_initrd(spec: Spec, entry: Entry) -> str | None:
    """The initrd an entry boots, relative to the TFTP root (None: the kernel boots alone).

    A container-built image has a dracut netboot initrd per root mode for live and nfs entries,
    and its whole root tree as the initramfs for ramdisk entries."""
    if entry.image is None:
        return None
    image = spec.images[entry.image]
    if image.container:
        if entry.root == "ramdisk":
            return layout.ramdisk_path(entry.image)
        return layout.netboot_initrd_path(entry.image, entry.root)
    return layout.initrd_path(entry.image) if image.initrd is not None else None


def kernel_cmdline(spec: Spec, site: Site, entry: Entry, extra: str = "",
                   host: Host | None = None) -> str:
    """The kernel command line for an entry: what its root mode needs, then the user's words.

    A host with a writable root (hosts[].writable_root) mounts its own tree read-write.
    """
    image = spec.images[entry.image] if entry.image else None
    words: list[str] = []
    if entry.root == "nfs" and image is not None:
        writable = host is not None and has_writable_root(spec, site, host)
        path = host_root_path(site, host) if writable and host else nfs_root_path(spec, site, entry)
        mode = "rw" if writable else "ro"
        if entry_initrd(spec, entry) is None:
            # The kernel mounts the root itself (CONFIG_ROOT_NFS, CONFIG_IP_PNP_DHCP).
            words += ["root=/dev/nfs", f"nfsroot={site.address}:{path},vers={entry.nfs_version},tcp",
                      "ip=dhcp", mode]
        else:
            scheme = "nfs4" if entry.nfs_version == 4 else "nfs"
            words += [f"root={scheme}:{site.address}:{path}:vers={entry.nfs_version},tcp",
                      "ip=dhcp", "rd.neednet=1", mode]
        if entry.nfs_version == 4:
            # Owners as numbers both ways, no id-mapping upcall (the appliance's Ganesha sends
            # numeric owners, Only_Numeric_Owners): booting never waits in nfs_idmap_get_key.
            words.append("nfs.nfs4_disable_idmapping=1")
    elif entry.root == "live" and image is not None and entry.image is not None:
        url = f"{site.http_base}/{layout.squashfs_path(entry.image)}"
        words.append(f"root=live:{url}")
        if not image.container:
            # the user's dracut livenet initrd; bootpack's own live init needs only root=
            words += ["rd.live.overlay.overlayfs=1", "ip=dhcp", "rd.neednet=1"]
    words += [w for w in (entry.cmdline.strip(), extra.strip()) if w]
    report = host.report_up if host is not None and host.report_up is not None else entry.report_up
    if report and entry.image is not None:
        words.append(f"{REPORT_PARAM}={report_url(site, entry)}")
    return " ".join(words)


REPORT_PARAM = "bootpack.report"  # read by the image's bootpack-report unit (images.roottree)


def report_url(site: Site, entry: Entry) -> str:
    """Where a booted system reports `up` (the appliance's status site, behind its nginx)."""
    return f"{site.http_base}/bootpack/up/{entry.name}"


def boot_item(spec: Spec, site: Site, entry: Entry, extra: str = "",
              host: Host | None = None) -> BootItem:
    """An entry as a loader-neutral item; `extra` (a host's cmdline) goes after the entry's."""
    # Menu text and command lines go into line-based loader configs: no control characters.
    label = quoting.one_line(entry.menu_label, f"the boot menu (entry {entry.name}: label)")
    if entry.root == "local":
        return BootItem(entry.name, label, None, None, "", False)
    assert entry.image is not None  # checked by entry_images_exist
    cmdline = quoting.one_line(kernel_cmdline(spec, site, entry, extra, host),
                               f"the boot menu (entry {entry.name}: cmdline)")
    return BootItem(entry.name, label, layout.kernel_path(entry.image), entry_initrd(spec, entry),
                    cmdline, entry.root in ("nfs", "live"))


def boot_menu(spec: Spec, site: Site, architecture: Architecture) -> BootMenu:
    """The menu every client of this architecture without a host config sees."""
    default = spec.architecture_default(architecture)
    # a chain is only carried for an architecture some entry boots on (checks)
    assert default is not None, f"no entry for {architecture}"
    items = tuple(boot_item(spec, site, e) for e in spec.architecture_entries(architecture))
    title = quoting.one_line(spec.menu.title, "the boot menu (menu.title)")
    return BootMenu(title=title, timeout=spec.menu.timeout, default=default.name, items=items)


def host_item(spec: Spec, site: Site, host: Host) -> BootItem:
    """What a known host boots at once: its entry, with the host's cmdline after the entry's."""
    return boot_item(spec, site, spec.host_entry(host), host.cmdline, host)
