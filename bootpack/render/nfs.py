"""NFS exports for nfs entries: /etc/exports lines (kernel nfsd) and NFS-Ganesha EXPORT blocks.

Shared root trees are exported read-only and limited to the client subnet. A host with
`writable_root = true` gets its own tree under `Site.host_roots_dir`, exported read-write to that
host's address alone. Root is not squashed because a diskless client's root user must own its
root tree. Ganesha's Pseudo path equals the real path, so NFSv3 and NFSv4 clients mount the same
path.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bundle import layout
from ..spec.model import Entry, Host, Spec
from ..spec.site import Site
from . import quoting
from .common import HEADER


@dataclass(frozen=True)
class Export:
    path: str
    clients: str  # a subnet, or one host's address
    writable: bool = False


def nfs_root_path(spec: Spec, site: Site, entry: Entry) -> str:
    """Absolute path of an nfs entry's shared root tree on the server."""
    if entry.nfs_path is not None:
        return entry.nfs_path
    assert entry.image is not None
    return f"{site.root}/{layout.root_tree_path(entry.image)}"


def host_root_path(site: Site, host: Host) -> str:
    """Absolute path of a host's writable root tree on the server."""
    return f"{site.host_roots_dir}/{host.name}"


def has_writable_root(spec: Spec, site: Site, host: Host, dropped: frozenset[str] | None = None,
                      ) -> bool:
    """The host is served its own writable root here (its fixed address fits this network).

    One host at a time, in constant time: a renderer asks this for every host (comparing host
    models against a list made per host was quadratic: 1,000 hosts took seconds)."""
    return (host.writable_root and host.ip is not None
            and host.name not in (site.dropped_hosts if dropped is None else dropped)
            and spec.host_entry(host).root == "nfs"
            and (site.subnet is None or host.ip in site.subnet))


def writable_hosts(spec: Spec, site: Site) -> list[Host]:
    """Hosts served their own writable root here, in spec order."""
    dropped = frozenset(site.dropped_hosts)
    return [h for h in spec.hosts if has_writable_root(spec, site, h, dropped)]


def nfs_export_list(spec: Spec, site: Site) -> list[Export]:
    """Distinct exports: shared trees in entry order, then writable host trees."""
    exports: list[Export] = []
    for entry in spec.entries:
        if entry.root == "nfs":
            path = nfs_root_path(spec, site, entry)
            if path not in (e.path for e in exports):  # entries only: a handful
                exports.append(Export(path, str(site.subnet)))
    for host in writable_hosts(spec, site):
        exports.append(Export(host_root_path(site, host), f"{host.ip}/32", writable=True))
    return exports


def nfs_exports(spec: Spec, site: Site) -> list[str]:
    """Distinct exported paths."""
    return [e.path for e in nfs_export_list(spec, site)]


def render_exports(spec: Spec, site: Site) -> str:
    lines = [HEADER]
    for export in nfs_export_list(spec, site):
        mode = "rw" if export.writable else "ro"
        lines.append(f"{quoting.exports_path(export.path)} "
                     f"{export.clients}({mode},no_root_squash,no_subtree_check,async)\n")
    return "".join(lines)


GANESHA_NOTE = (
    "# Include these EXPORT blocks from a ganesha.conf whose NFSV4 block sets\n"
    "# Only_Numeric_Owners = true (as `bootpack serve` does): root trees keep the image's own\n"
    "# uids and gids, and NFSv4 clients (nfs.nfs4_disable_idmapping=1) map no names.\n"
)


def render_ganesha(spec: Spec, site: Site) -> str:
    blocks = [HEADER + GANESHA_NOTE]
    for export_id, export in enumerate(nfs_export_list(spec, site), start=1):
        access = "RW" if export.writable else "RO"
        blocks.append(
            "EXPORT {\n"
            f"    Export_Id = {export_id};\n"
            f"    Path = {quoting.ganesha_string(export.path)};\n"
            f"    Pseudo = {quoting.ganesha_string(export.path)};\n"
            "    Protocols = 3, 4;\n"
            "    Transports = TCP;\n"
            "    Access_Type = None;\n"
            "    Squash = No_Root_Squash;\n"
            "    SecType = sys;\n"
            "    FSAL { Name = VFS; }\n"
            f"    CLIENT {{ Clients = {export.clients}; Access_Type = {access}; }}\n"
            "}\n"
        )
    return "\n".join(blocks)
