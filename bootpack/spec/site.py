"""The network a bundle is served on: everything that carries the server address goes through here.

The network checks (bootpack.spec.checks) take a Site, so `build` and `serve` run the same rules.

A build renders for the spec's own network (`Site.from_spec`); `bootpack serve` renders the same
spec for the network it actually runs on, so pxelinux configs, DHCP, exports and URLs follow it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from ..bundle import layout
from .model import DhcpMode, Spec


@dataclass(frozen=True)
class Origin:
    """Where the user set each network value, so a check's message names what to change: the
    spec's TOML paths for `build`, `serve`'s flags where they override the spec."""

    address: str = "server.address"
    subnet: str = "dhcp.subnet"
    range: str = "dhcp.range"
    router: str = "dhcp.router"
    mode: str = "dhcp.mode"


SPEC_ORIGIN = Origin()


@dataclass(frozen=True)
class Site:
    address: IPv4Address
    subnet: IPv4Network | None
    range: tuple[IPv4Address, IPv4Address] | None
    router: IPv4Address | None
    dns: tuple[IPv4Address, ...] = ()
    domain: str | None = None
    lease_time: int = 3600
    mode: DhcpMode = "server"
    http_port: int = 80
    root: str = "/srv/bootpack"  # where the bundle directory is on the server
    dropped_hosts: tuple[str, ...] = field(default=())  # hosts whose fixed IP does not fit here
    host_roots: str | None = None  # writable per-host root trees (default <root>/hosts)
    origin: Origin = SPEC_ORIGIN

    @classmethod
    def from_spec(cls, spec: Spec) -> Site:
        d = spec.dhcp
        return cls(
            address=spec.server.address, subnet=d.subnet, range=d.range, router=d.router,
            dns=tuple(d.dns), domain=d.domain, lease_time=d.lease_time, mode=d.mode,
            http_port=spec.server.http_port, root=spec.server.root,
        )

    @property
    def host_roots_dir(self) -> str:
        return self.host_roots or f"{self.root}/{layout.HOSTS_DIR}"

    @property
    def http_base(self) -> str:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{self.address}{port}"
