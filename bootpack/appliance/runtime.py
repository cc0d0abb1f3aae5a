"""`bootpack serve`: the runtime site and every daemon's configuration, as pure functions.

A bundle is built for the spec's network. `serve` may run on another one: `runtime_site` moves
everything that carries the server address (and, when the serving subnet differs, the DHCP
subnet, range and fixed hosts) to the network it actually runs on, and `render_runtime` turns
that into the files the daemons read. Nothing here touches the disk or starts a process; the
I/O lives in `bootpack.appliance.serve`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from ..bundle import layout
from ..errors import BootpackError
from ..render import Site
from ..render.dhcp import render_dnsmasq, render_isc
from ..render.nfs import nfs_export_list, render_ganesha
from ..render.pxelinux import render_pxelinux
from ..spec.model import DhcpMode, Spec

RUNTIME_TFTP = "tftpboot"  # under the runtime dir: rendered pxelinux.cfg + links to the bundle


@dataclass(frozen=True)
class RuntimeSite:
    site: Site
    warnings: tuple[str, ...] = ()


def _shift(address: IPv4Address, old: IPv4Network, new: IPv4Network) -> IPv4Address:
    """The address at the same offset from the start of `new` as `address` has in `old`."""
    return new.network_address + (int(address) - int(old.network_address))


def _usable(address: IPv4Address, subnet: IPv4Network) -> bool:
    return address in subnet and address not in (subnet.network_address, subnet.broadcast_address)


def runtime_site(spec: Spec, *, root: str, address: IPv4Interface | IPv4Address | None = None,
                 interface: IPv4Interface | None = None, mode: DhcpMode | None = None,
                 dhcp_range: tuple[IPv4Address, IPv4Address] | None = None,
                 host_roots: str | None = None) -> RuntimeSite:
    """The site a bundle is served as on this network.

    address: --address (IP or IP/PREFIX); interface: the serving interface's own address and
    prefix. The subnet is the prefix given, else the interface's, else the spec's.
    """
    base = Site.from_spec(spec)
    warnings: list[str] = []
    if isinstance(address, IPv4Interface):
        server, subnet = address.ip, address.network
    elif address is not None:
        server = address
        if interface is not None and address in interface.network:
            subnet = interface.network
        elif base.subnet is not None and address in base.subnet:
            subnet = base.subnet
        else:
            subnet = None
    elif interface is not None:
        server, subnet = interface.ip, interface.network
    else:
        server, subnet = base.address, base.subnet
    if subnet is None:
        subnet = base.subnet
        if subnet is not None and server not in subnet:
            raise BootpackError(
                f"--address {server}: outside the spec's subnet {subnet} and no prefix is known; "
                "give it with its prefix, e.g. --address 10.1.2.3/24")
    mode = mode or base.mode
    site = replace(base, address=server, subnet=subnet, mode=mode, root=root, host_roots=host_roots)
    old = base.subnet
    moved = old is not None and subnet is not None and subnet != old
    if dhcp_range is not None:
        site = replace(site, range=dhcp_range)
    elif moved and base.range is not None:
        assert old is not None and subnet is not None
        shifted = (_shift(base.range[0], old, subnet), _shift(base.range[1], old, subnet))
        if mode == "server" and not all(_usable(a, subnet) for a in shifted):
            raise BootpackError(
                f"the spec's dhcp.range {base.range[0]}-{base.range[1]} does not fit {subnet} at the "
                "same offsets; give the pool with --range FIRST-LAST")
        site = replace(site, range=shifted)
        warnings.append(f"serving {subnet} instead of the spec's {old}: DHCP pool "
                        f"{shifted[0]}-{shifted[1]}")
    if mode == "server":
        if site.range is None:
            raise BootpackError("DHCP server mode needs a pool: set dhcp.range in the spec or give "
                                "--range FIRST-LAST (or use --dhcp proxy / --dhcp off)")
        assert subnet is not None
        for a in site.range:
            if not _usable(a, subnet):
                raise BootpackError(f"--range: {a} is not a host address of {subnet}")
        if site.range[0] <= server <= site.range[1]:
            raise BootpackError(f"the DHCP pool {site.range[0]}-{site.range[1]} holds the server's "
                                f"own address {server}; give another pool with --range")
    if mode in ("server", "proxy") and subnet is None:
        raise BootpackError(f"DHCP {mode} mode needs the client subnet: give --address IP/PREFIX")
    if site.router is not None and subnet is not None and site.router not in subnet:
        warnings.append(f"router {site.router} is outside {subnet}: not handed out")
        site = replace(site, router=None)
    if subnet is not None:
        dropped = tuple(h.name for h in spec.hosts if h.ip is not None and h.ip not in subnet)
        for host in spec.hosts:
            if host.name in dropped:
                warnings.append(f"host {host.name}: fixed address {host.ip} is outside {subnet}; "
                                "dropped from DHCP (its pxelinux config is still served)")
        site = replace(site, dropped_hosts=dropped)
    return RuntimeSite(site=site, warnings=tuple(warnings))


@dataclass(frozen=True)
class Paths:
    """Where things are at run time."""

    bundle: str  # the bundle directory (read-only to every daemon)
    runtime: str  # rendered configs, pid and lease files, the TFTP root

    @property
    def tftp_root(self) -> str:
        return f"{self.runtime}/{RUNTIME_TFTP}"


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: tuple[str, ...]
    after: tuple[str, ...] = ()  # services that must be ready first
    ready_path: str | None = None  # exists once the service is up (e.g. a socket)


@dataclass(frozen=True)
class Runtime:
    files: dict[str, str]  # path relative to the runtime dir -> text
    services: tuple[Daemon, ...]
    exports: tuple[str, ...] = ()
    empty_files: tuple[str, ...] = field(default=())  # e.g. dhcpd's lease file


def render_nginx(site: Site, paths: Paths) -> str:
    """HTTP: the bundle's tftpboot/ (kernels, initrds, squashfs), runtime pxelinux.cfg/ on top.

    No directory listing, range requests (nginx's default for static files), nothing outside
    the two roots: nginx normalises the URI and refuses '..' above the root.
    """
    bundle_http = f"{paths.bundle}/{layout.TFTP_DIR}"
    return f"""# Generated by bootpack serve.
daemon off;
worker_processes 1;
pid {paths.runtime}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
    access_log /dev/stdout;
    client_body_temp_path {paths.runtime}/nginx/body;
    proxy_temp_path {paths.runtime}/nginx/proxy;
    fastcgi_temp_path {paths.runtime}/nginx/fastcgi;
    uwsgi_temp_path {paths.runtime}/nginx/uwsgi;
    scgi_temp_path {paths.runtime}/nginx/scgi;
    sendfile on;
    server_tokens off;
    autoindex off;
    default_type application/octet-stream;
    types {{ text/plain cfg txt; application/json json; }}
    server {{
        listen {site.address}:{site.http_port};
        location = / {{ return 404; }}
        location /{layout.PXE_CONFIG_DIR}/ {{
            root {paths.tftp_root};
            limit_except GET {{ deny all; }}
        }}
        location / {{
            root {bundle_http};
            limit_except GET {{ deny all; }}
        }}
    }}
}}
"""


def render_ganesha_main(spec: Spec, site: Site, paths: Paths) -> str:
    """ganesha.conf: core parameters (no grace period, no NLM/RQUOTA) and the bundle's exports.

    NFSv4 owners go on the wire as numbers (Only_Numeric_Owners), as NFSv3 sends them. A root
    tree's owners are the image's uids and gids: resolved to names against the appliance's own
    /etc/passwd they come out wrong (uid 102 is statd in a Debian image, _rpc in the appliance),
    and each name costs the client an id-mapping upcall (nfs_idmap_get_key) while it boots.
    Clients get nfs.nfs4_disable_idmapping=1 (render.pxelinux) to match.
    """
    core = f"""# Generated by bootpack serve.
NFS_CORE_PARAM {{
    Protocols = 3, 4;
    Bind_addr = {site.address};
    Enable_NLM = false;
    Enable_RQUOTA = false;
}}
NFSV4 {{
    Graceless = true;
    RecoveryBackend = fs;
    Allow_Numeric_Owners = true;
    Only_Numeric_Owners = true;
}}
NFS_KRB5 {{ Active_krb5 = false; }}

"""
    return core + render_ganesha(spec, site)


def render_dnsmasq_runtime(spec: Spec, site: Site, paths: Paths, interface: str) -> str:
    """dnsmasq.conf for proxy (or server) mode, bound to the serving interface."""
    return render_dnsmasq(spec, site) + (
        f"interface={interface}\n"
        "bind-interfaces\n"
        f"dhcp-leasefile={paths.runtime}/dnsmasq.leases\n"
        f"pid-file={paths.runtime}/dnsmasq.pid\n"
    )


def render_runtime(spec: Spec, site: Site, paths: Paths, interface: str,
                   *, tftpd: str = "in.tftpd", dhcpd: str = "dhcpd", dnsmasq: str = "dnsmasq",
                   nginx: str = "nginx", rpcbind: str = "rpcbind",
                   ganesha: str = "ganesha.nfsd") -> Runtime:
    """Every runtime config file and the daemons to run, for this site."""
    files: dict[str, str] = {}
    for rel, text in render_pxelinux(spec, site).items():
        files[f"{RUNTIME_TFTP}/{rel}"] = text
    files["nginx.conf"] = render_nginx(site, paths)
    r = paths.runtime
    services: list[Daemon] = []
    empty: list[str] = []
    if site.mode == "server":
        files["dhcpd.conf"] = render_isc(spec, site)
        empty.append("dhcpd.leases")
        services.append(Daemon("dhcpd", (
            dhcpd, "-d", "-4", "-cf", f"{r}/dhcpd.conf", "-lf", f"{r}/dhcpd.leases",
            "-pf", f"{r}/dhcpd.pid", interface)))
    elif site.mode == "proxy":
        files["dnsmasq.conf"] = render_dnsmasq_runtime(spec, site, paths, interface)
        services.append(Daemon("dnsmasq", (
            dnsmasq, "--keep-in-foreground", "--log-facility=-", "--user=root",
            f"--conf-file={r}/dnsmasq.conf")))
    # tftpd-hpa: chrooted into the runtime TFTP root (--secure), read-only (no --create),
    # tsize and blksize negotiated by default; logs go to syslog (the supervisor's /dev/log).
    services.append(Daemon("tftpd", (
        tftpd, "--foreground", "--listen", "--secure", "--verbose", "--user", "nobody",
        "--address", f"{site.address}:69", paths.tftp_root)))
    services.append(Daemon("http", (nginx, "-c", f"{r}/nginx.conf", "-e", "stderr")))
    exports = tuple(e.path for e in nfs_export_list(spec, site))
    if exports:
        files["ganesha.conf"] = render_ganesha_main(spec, site, paths)
        services.append(Daemon("rpcbind", (rpcbind, "-w", "-f"),
                                    ready_path="/run/rpcbind.sock"))
        services.append(Daemon("nfs", (
            ganesha, "-F", "-L", "STDERR", "-f", f"{r}/ganesha.conf", "-p", f"{r}/ganesha.pid"),
            after=("rpcbind",)))
    return Runtime(files=files, services=tuple(services), exports=exports,
                   empty_files=tuple(empty))
