"""pxelinux.cfg files: a menu for unknown clients, one direct-boot file per known host."""

from __future__ import annotations

from ..bundle import layout
from ..spec.model import Entry, Host, Spec
from ..spec.site import Site
from . import quoting
from .common import HEADER
from .nfs import host_root_path, nfs_root_path, writable_hosts


def entry_initrd(spec: Spec, entry: Entry) -> str | None:
    """The initrd an entry boots, relative to the TFTP root (None: the kernel boots alone).

    A container-built image has a dracut netboot initrd for live and nfs entries, and its whole
    root tree as the initramfs for ramdisk entries."""
    if entry.image is None:
        return None
    image = spec.images[entry.image]
    if image.container:
        if entry.root == "ramdisk":
            return layout.ramdisk_path(entry.image)
        return layout.initrd_path(entry.image)
    return layout.initrd_path(entry.image) if image.initrd is not None else None


def kernel_cmdline(spec: Spec, site: Site, entry: Entry, extra: str = "",
                   host: Host | None = None) -> str:
    """The kernel command line for an entry: what its root mode needs, then the user's words.

    A host with a writable root (hosts[].writable_root) mounts its own tree read-write.
    """
    image = spec.images[entry.image] if entry.image else None
    words: list[str] = []
    if entry.root == "nfs" and image is not None:
        writable = host is not None and host in writable_hosts(spec, site)
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
    elif entry.root == "live" and entry.image is not None:
        url = f"{site.http_base}/{layout.squashfs_path(entry.image)}"
        words += [f"root=live:{url}", "rd.live.overlay.overlayfs=1", "ip=dhcp", "rd.neednet=1"]
    words += [w for w in (entry.cmdline.strip(), extra.strip()) if w]
    report = host.report_up if host is not None and host.report_up is not None else entry.report_up
    if report and entry.image is not None:
        words.append(f"{REPORT_PARAM}={report_url(site, entry)}")
    return " ".join(words)


REPORT_PARAM = "bootpack.report"  # read by the image's bootpack-report unit (images.roottree)


def report_url(site: Site, entry: Entry) -> str:
    """Where a booted system reports `up` (the appliance's status site, behind its nginx)."""
    return f"{site.http_base}/bootpack/up/{entry.name}"


def _label(spec: Spec, site: Site, entry: Entry, extra: str, menu_default: bool,
           host: Host | None = None) -> str:
    lines = [f"LABEL {quoting.pxelinux(entry.name)}",
             f"  MENU LABEL {quoting.pxelinux(entry.menu_label)}"]
    if menu_default:
        lines.append("  MENU DEFAULT")
    if entry.root == "local":
        lines.append("  LOCALBOOT 0")
        return "\n".join(lines) + "\n"
    assert entry.image is not None  # checked by entry_images_exist
    lines.append(f"  KERNEL {layout.kernel_path(entry.image)}")
    initrd = entry_initrd(spec, entry)
    if initrd is not None:
        lines.append(f"  INITRD {initrd}")
    cmdline = kernel_cmdline(spec, site, entry, extra, host)
    if cmdline:
        lines.append(f"  APPEND {quoting.pxelinux(cmdline)}")
    if entry.root in ("nfs", "live"):
        lines.append("  IPAPPEND 2")  # BOOTIF=<mac>: the initrd/kernel use the NIC that booted
    return "\n".join(lines) + "\n"


def default_config(spec: Spec, site: Site) -> str:
    """The menu every client without a host file sees."""
    default = spec.default_entry
    head = [HEADER.rstrip("\n")]
    if spec.menu.timeout == 0:
        # syslinux reads TIMEOUT 0 as "wait forever"; boot the default without showing a menu.
        head += [f"DEFAULT {default.name}", "PROMPT 0"]
    else:
        head += ["UI menu.c32", f"DEFAULT {default.name}", "PROMPT 0",
                 f"TIMEOUT {spec.menu.timeout * 10}",
                 f"MENU TITLE {quoting.pxelinux(spec.menu.title)}"]
    labels = [_label(spec, site, e, "", e.name == default.name) for e in spec.entries]
    return "\n".join(head) + "\n\n" + "\n".join(labels)


def host_config(spec: Spec, site: Site, host: Host) -> str:
    """A known host boots its entry at once, with the host's cmdline after the entry's."""
    entry = spec.host_entry(host)
    head = [HEADER.rstrip("\n"), f"# host {host.name} ({host.mac})", f"DEFAULT {entry.name}",
            "PROMPT 0"]
    return "\n".join(head) + "\n\n" + _label(spec, site, entry, host.cmdline, True, host)


def render_pxelinux(spec: Spec, site: Site) -> dict[str, str]:
    """Paths relative to the TFTP root -> file contents."""
    files = {f"{layout.PXE_CONFIG_DIR}/default": default_config(spec, site)}
    for host in spec.hosts:
        files[layout.pxelinux_host_file(host.mac)] = host_config(spec, site, host)
    return files
