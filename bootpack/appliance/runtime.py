"""`bootpack serve`: the runtime site and every daemon's configuration, as pure functions.

A bundle is built for the spec's network. `serve` may run on another one: `runtime_site` moves
everything that carries the server address (and, when the serving subnet differs, the DHCP
subnet, range and fixed hosts) to the network it actually runs on, and `render_runtime` turns
that into the files the daemons read. Nothing here touches the disk or starts a process; the
I/O lives in `bootpack.appliance.serve`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from ..bundle import layout
from ..errors import BootpackError
from ..render import quoting, render_loader_configs
from ..render.common import RUNTIME_HEADER
from ..render.dhcp import kea_config, render_dnsmasq, render_isc
from ..render.nfs import nfs_export_list, render_ganesha
from ..spec.checks import run_checks
from ..spec.model import DhcpMode, Spec
from ..spec.secureboot import proxy_mode_warnings
from ..spec.site import Site
from .bootlog import ACCESS_FORMAT

RUNTIME_TFTP = "tftpboot"  # under the runtime dir: rendered loader configs + links to the bundle
# Folders of loader configs in the TFTP root: rendered for the runtime site, never taken from
# the bundle (they carry the server address in command lines and URLs).
RUNTIME_CONFIG_DIRS = (layout.PXE_CONFIG_DIR, layout.GRUB_DIR, layout.IPXE_DIR)


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
    """The site a bundle is served as on this network, checked by the same rules as `build`.

    address: --address (IP or IP/PREFIX); interface: the serving interface's own address and
    prefix. The subnet is the prefix given, else the interface's, else the spec's. The spec's
    pool moves with the subnet (same offsets); a router or fixed host address that does not fit
    the new subnet is dropped with a warning.
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
    origin = replace(
        base.origin,
        address="--address" if address is not None else "the serving interface's address",
        subnet="the serving subnet (--address IP/PREFIX)",
        mode="--dhcp" if mode is not None else base.origin.mode,
        range="--range" if dhcp_range is not None else f"{base.origin.range} (or --range)",
    )
    mode = mode or base.mode
    site = replace(base, address=server, subnet=subnet, mode=mode, root=root, host_roots=host_roots,
                   origin=origin)
    old = base.subnet
    moved = old is not None and subnet is not None and subnet != old
    if dhcp_range is not None:
        site = replace(site, range=dhcp_range)
    elif moved and base.range is not None and mode != "server":
        site = replace(site, range=None)  # only server mode hands out a pool
    elif moved and base.range is not None:
        assert old is not None and subnet is not None
        shifted = (_shift(base.range[0], old, subnet), _shift(base.range[1], old, subnet))
        if not all(_usable(a, subnet) for a in shifted):
            raise BootpackError(
                f"the spec's dhcp.range {base.range[0]}-{base.range[1]} does not fit {subnet} at the "
                "same offsets; give the pool with --range FIRST-LAST")
        site = replace(site, range=shifted, origin=replace(origin, range=(
            f"the spec's dhcp.range moved to {subnet} (give another with --range)")))
        warnings.append(f"serving {subnet} instead of the spec's {old}: DHCP pool "
                        f"{shifted[0]}-{shifted[1]}")
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
    warnings += proxy_mode_warnings(spec, mode)
    problems = run_checks(spec, site)
    if problems:
        raise BootpackError("cannot serve this bundle on this network:\n" +
                            "\n".join(f"  {p}" for p in problems))
    return RuntimeSite(site=site, warnings=tuple(warnings))


def first_loader(spec: Spec) -> str:
    """The first file clients fetch over TFTP (the health check reads it)."""
    chains = spec.loaders.chains
    if "bios" in chains:
        return layout.BOOTFILE
    return layout.UEFI_BOOTFILE if "uefi" in chains else layout.UEFI_ARM64_BOOTFILE


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


def _status_locations(port: int | None) -> str:
    """The status site (bootpack.appliance.statusweb) on loopback, proxied from the serving
    address: the dashboard and API under /bootpack/, and /metrics."""
    if port is None:
        return ""
    proxy = (f"proxy_pass http://127.0.0.1:{port}; proxy_set_header X-Real-IP $remote_addr; "
             "proxy_set_header Host $host;")
    return f"""        location /bootpack/ {{ {proxy} }}
        location = /bootpack {{ return 301 /bootpack/$is_args$args; }}
        location = /metrics {{ {proxy} }}
"""


def render_nginx(site: Site, paths: Paths, status_port: int | None = None) -> str:
    """HTTP: the bundle's tftpboot/ (kernels, initrds, squashfs, loaders), runtime loader configs
    (pxelinux.cfg/, grub/) on top.

    No directory listing, range requests (nginx's default for static files), nothing outside
    the two roots: nginx normalises the URI and refuses '..' above the root. The access log
    line (bootlog.ACCESS_FORMAT) carries what the boot timeline needs: client, URI, status,
    bytes and request time.
    """
    for path in (paths.bundle, paths.runtime):
        quoting.nginx_path(path)  # written unquoted below: a space or ';' would end the directive
    bundle_http = f"{paths.bundle}/{layout.TFTP_DIR}"
    runtime_locations = "".join(
        f"        location /{folder}/ {{\n            root {paths.tftp_root};\n"
        "            limit_except GET { deny all; }\n        }\n" for folder in RUNTIME_CONFIG_DIRS
    ).rstrip("\n")
    return RUNTIME_HEADER + f"""daemon off;
worker_processes 1;
pid {paths.runtime}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
    log_format bootpack '{ACCESS_FORMAT}';
    access_log /dev/stdout bootpack;
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
{_status_locations(status_port)}{runtime_locations}
        location / {{
            root {bundle_http};
            limit_except GET {{ deny all; }}
        }}
    }}
}}
"""


# Ganesha logs no mount at its default level (EVENT). For the boot timeline's NFS stage (bootlog)
# its CLIENTID component logs at DEBUG the client's EXCHANGE_ID (NFSv4.1+) and SETCLIENTID (v4.0):
# a few lines per client and mount, and CLIENTIP names the client in each line's header. (EXPORT
# and NFSPROTO at DEBUG were measured too: a line or two per PUTFH or NFSv3 call, far too many.)
GANESHA_LOG = """LOG {
    COMPONENTS { CLIENTID = DEBUG; }
    FORMAT { CLIENTIP = true; }
}
"""


def render_ganesha_main(spec: Spec, site: Site, paths: Paths, *, track: bool = False) -> str:
    """ganesha.conf: core parameters (no grace period, no NLM/RQUOTA) and the bundle's exports.

    NFSv4 owners go on the wire as numbers (Only_Numeric_Owners), as NFSv3 sends them. A root
    tree's owners are the image's uids and gids: resolved to names against the appliance's own
    /etc/passwd they come out wrong (uid 102 is statd in a Debian image, _rpc in the appliance),
    and each name costs the client an id-mapping upcall (nfs_idmap_get_key) while it boots.
    Clients get nfs.nfs4_disable_idmapping=1 (render.pxelinux) to match. track: log the mounts
    the boot timeline reads (GANESHA_LOG).
    """
    core = RUNTIME_HEADER + f"""NFS_CORE_PARAM {{
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
{GANESHA_LOG if track else ''}
"""
    return core + render_ganesha(spec, site)


def render_dnsmasq_runtime(spec: Spec, site: Site, paths: Paths, interface: str) -> str:
    """dnsmasq.conf for proxy (or server) mode, bound to the serving interface."""
    runtime = quoting.dnsmasq_word(paths.runtime)
    return render_dnsmasq(spec, site) + (
        f"interface={quoting.dnsmasq_word(interface)}\n"
        "bind-interfaces\n"
        f"dhcp-leasefile={runtime}/dnsmasq.leases\n"
        f"pid-file={runtime}/dnsmasq.pid\n"
    )


# -- DHCP high availability: Kea's HA hook ----------------------------------------------------

KEA_HOOKS = "/usr/lib/x86_64-linux-gnu/kea/hooks"  # Debian's kea-common
HA_PORT = 8000
_PEER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
_PEER_URL = re.compile(r"^http://(?P<ip>[0-9.]+)(?::(?P<port>[0-9]{1,5}))?/?$")
# Failure detection (milliseconds): a heartbeat every second; the partner is declared down when
# it has not answered for max-response-delay and (max-unacked-clients 0) at once after that.
HA_HEARTBEAT_MS = 1000
HA_MAX_RESPONSE_MS = 3000
HA_MAX_ACK_MS = 1000
HA_SYNC_TIMEOUT_MS = 10000


@dataclass(frozen=True)
class Peer:
    """One member of a Kea HA pair: its name and where its HA listener answers."""

    name: str
    address: IPv4Address
    port: int = HA_PORT

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/"


def parse_peer(value: str) -> Peer:
    """`NAME=http://IP[:PORT]/` (the --peer option); ValueError says what is wrong.

    Only an IPv4 address is accepted as host: Kea's HA listener binds to it and Kea does not
    resolve names."""
    name, sep, url = value.partition("=")
    if not sep or not _PEER_NAME.match(name):
        raise ValueError(f"{value!r}: give NAME=URL with NAME of lower-case letters, digits and "
                         "'-' (at most 32), e.g. boot-a=http://10.1.2.3:8000/")
    match = _PEER_URL.match(url)
    try:
        address = IPv4Address(match["ip"]) if match else None
    except ValueError:
        address = None
    port = int(match["port"]) if match and match["port"] else HA_PORT
    if address is None or not 0 < port < 65536:
        raise ValueError(f"{value!r}: the URL must be http://IPV4[:PORT]/ (Kea's HA listener "
                         "binds to that address; no host names, no https)")
    return Peer(name, address, port)


@dataclass(frozen=True)
class HighAvailability:
    """A hot-standby pair: peers[0] is the primary, peers[1] the standby, any more are backups
    (they receive lease updates, and take over only by hand)."""

    peers: tuple[Peer, ...]
    this: str

    @property
    def me(self) -> Peer:
        return next(p for p in self.peers if p.name == self.this)

    def role(self, peer: Peer) -> str:
        index = self.peers.index(peer)
        return "primary" if index == 0 else "standby" if index == 1 else "backup"


def high_availability(peers: tuple[Peer, ...], address: IPv4Address,
                      this: str | None = None) -> HighAvailability:
    """Check the peer list given at run time; this server is the one named `this`, else the
    one whose URL is on `address` (so every member of the pair gets the same --peer list)."""
    if len(peers) < 2:
        raise BootpackError("DHCP high availability needs at least two --peer NAME=URL (the first "
                            "is the primary, the second the standby)")
    for what, values in (("name", [p.name for p in peers]), ("URL", [p.url for p in peers])):
        if len(set(values)) != len(values):
            raise BootpackError(f"--peer: every peer needs its own {what} ({', '.join(values)})")
    if this is None:
        mine = [p for p in peers if p.address == address]
        if len(mine) != 1:
            raise BootpackError(f"--peer: none of the peers' URLs is on this server's address "
                                f"{address} ({', '.join(p.url for p in peers)}); give --peer-name "
                                "NAME to say which one this is")
        this = mine[0].name
    elif this not in [p.name for p in peers]:
        raise BootpackError(f"--peer-name {this}: not one of the peers "
                            f"({', '.join(p.name for p in peers)})")
    ha = HighAvailability(peers, this)
    if ha.me.address != address:
        raise BootpackError(f"--peer {ha.me.name}: its URL {ha.me.url} is not on this server's "
                            f"address {address}; the HA listener must be reachable there")
    return ha


def kea_runtime_config(spec: Spec, site: Site, paths: Paths, interface: str,
                       ha: HighAvailability | None) -> dict[str, Any]:
    """kea-dhcp4's configuration: the bundle's Kea config (render.dhcp.kea_config) bound to
    the serving interface, leases in a persistent memfile in the runtime dir, and with `ha` the
    lease_cmds and HA hooks (hot-standby, HA traffic on Kea's own HTTP listener, no control
    agent needed with Kea >= 2.0)."""
    r = paths.runtime
    config = kea_config(spec, site)
    dhcp4: dict[str, Any] = config["Dhcp4"]
    dhcp4["interfaces-config"] = {"interfaces": [interface], "dhcp-socket-type": "raw"}
    dhcp4["lease-database"] = {"type": "memfile", "persist": True, "name": f"{r}/kea-leases4.csv",
                               "lfc-interval": 0}
    dhcp4["control-socket"] = {"socket-type": "unix", "socket-name": f"{r}/kea4.sock"}
    dhcp4["loggers"] = [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}],
                         "severity": "INFO"}]
    if ha is not None:
        dhcp4["multi-threading"] = {"enable-multi-threading": True, "thread-pool-size": 2,
                                    "packet-queue-size": 16}
        dhcp4["hooks-libraries"] = [
            {"library": f"{KEA_HOOKS}/libdhcp_lease_cmds.so"},
            {"library": f"{KEA_HOOKS}/libdhcp_ha.so", "parameters": {"high-availability": [{
                "this-server-name": ha.this,
                "mode": "hot-standby",
                "heartbeat-delay": HA_HEARTBEAT_MS,
                "max-response-delay": HA_MAX_RESPONSE_MS,
                "max-ack-delay": HA_MAX_ACK_MS,
                "max-unacked-clients": 0,
                "sync-timeout": HA_SYNC_TIMEOUT_MS,
                "multi-threading": {"enable-multi-threading": True, "http-dedicated-listener": True,
                                    "http-listener-threads": 2, "http-client-threads": 2},
                "peers": [{"name": p.name, "url": p.url, "role": ha.role(p),
                           "auto-failover": ha.role(p) != "backup"} for p in ha.peers],
            }]}},
        ]
    return config


def render_runtime(spec: Spec, site: Site, paths: Paths, interface: str,
                   *, tftpd: str = "in.tftpd", dhcpd: str = "dhcpd", dnsmasq: str = "dnsmasq",
                   nginx: str = "nginx", rpcbind: str = "rpcbind",
                   ganesha: str = "ganesha.nfsd", kea: str = "kea-dhcp4",
                   ha: HighAvailability | None = None, status_port: int | None = None) -> Runtime:
    """Every runtime config file and the daemons to run, for this site (status_port: where the
    status site listens on loopback, for nginx to proxy; None: no status site)."""
    files: dict[str, str] = {}
    for rel, text in render_loader_configs(spec, site).items():
        files[f"{RUNTIME_TFTP}/{rel}"] = text
    files["nginx.conf"] = render_nginx(site, paths, status_port)
    r = paths.runtime
    services: list[Daemon] = []
    empty: list[str] = []
    if site.mode == "server" and ha is not None:
        files["kea-dhcp4.conf"] = json.dumps(kea_runtime_config(spec, site, paths, interface, ha),
                                             indent=2) + "\n"
        # Kea writes its pid and lock files where these say (default /run/kea).
        services.append(Daemon("kea", (
            "env", f"KEA_PIDFILE_DIR={r}", f"KEA_LOCKFILE_DIR={r}", kea, "-c",
            f"{r}/kea-dhcp4.conf")))
    elif site.mode == "server":
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
        files["ganesha.conf"] = render_ganesha_main(spec, site, paths,
                                                     track=status_port is not None)
        # -d: rpcbind prints each lookup with the caller's address; an NFSv3 client asking for
        # the MOUNT service (100005) is the boot timeline's NFSv3 mount (bootlog). (-d changes no
        # behaviour: aborting on errors is -a.)
        debug = ("-d",) if status_port is not None else ()
        services.append(Daemon("rpcbind", (rpcbind, "-w", "-f", *debug),
                                    ready_path="/run/rpcbind.sock"))
        services.append(Daemon("nfs", (
            ganesha, "-F", "-L", "STDERR", "-f", f"{r}/ganesha.conf", "-p", f"{r}/ganesha.pid"),
            after=("rpcbind",)))
    return Runtime(files=files, services=tuple(services), exports=exports,
                   empty_files=tuple(empty))
