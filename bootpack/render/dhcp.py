"""DHCP snippets for the three servers people run: ISC dhcpd, dnsmasq and Kea.

Server mode hands out addresses from the pool and fixed addresses to known hosts, and tells PXE
clients where pxelinux.0 is. Proxy mode (dnsmasq only) leaves addresses to the LAN's existing
server and answers PXE clients with boot data alone.
"""

from __future__ import annotations

import json
from typing import Any

from ..bundle import layout
from ..spec.model import Host, Spec
from ..spec.site import Site
from . import quoting
from .common import HEADER


def served_hosts(spec: Spec, site: Site) -> list[Host]:
    """Hosts with a fixed address that fits the served subnet."""
    return [h for h in spec.hosts if h.ip is not None and h.name not in site.dropped_hosts
            and (site.subnet is None or h.ip in site.subnet)]


def render_isc(spec: Spec, site: Site) -> str:
    assert site.subnet is not None and site.range is not None
    out = [HEADER, quoting.one_line(f"# bundle {spec.bundle.name} {spec.bundle.version}",
                                    "dhcpd.conf") + "\n",
           "authoritative;\n", "allow booting;\n", "allow bootp;\n",
           f"default-lease-time {site.lease_time};\n", f"max-lease-time {site.lease_time};\n\n",
           f"subnet {site.subnet.network_address} netmask {site.subnet.netmask} {{\n",
           f"  range {site.range[0]} {site.range[1]};\n"]
    if site.router:
        out.append(f"  option routers {site.router};\n")
    if site.dns:
        out.append(f"  option domain-name-servers {', '.join(map(str, site.dns))};\n")
    if site.domain:
        out.append(f"  option domain-name {quoting.dhcpd_string(site.domain)};\n")
    out += [f"  next-server {site.address};\n", f'  filename "{layout.BOOTFILE}";\n', "}\n"]
    for host in served_hosts(spec, site):
        out.append(
            f"\nhost {quoting.dhcpd_word(host.name)} {{\n  hardware ethernet {host.mac};\n"
            f"  fixed-address {host.ip};\n  option host-name {quoting.dhcpd_string(host.name)};\n"
            f"  next-server {site.address};\n  filename \"{layout.BOOTFILE}\";\n}}\n"
        )
    return "".join(out)


def render_dnsmasq(spec: Spec, site: Site) -> str:
    assert site.subnet is not None
    out = [HEADER, quoting.one_line(f"# bundle {spec.bundle.name} {spec.bundle.version}",
                                    "dnsmasq.conf") + "\n",
           "port=0\n",  # DHCP only: no DNS server
           "log-dhcp\n"]
    netmask = site.subnet.netmask
    if site.mode == "proxy":
        out += [f"dhcp-range={site.subnet.network_address},proxy,{netmask}\n",
                f"pxe-service=x86PC,{quoting.dnsmasq_string(spec.menu.title)},pxelinux,"
                f"{site.address}\n"]
    else:
        assert site.range is not None
        out.append(f"dhcp-range={site.range[0]},{site.range[1]},{netmask},{site.lease_time}\n")
        if site.router:
            out.append(f"dhcp-option=option:router,{site.router}\n")
        if site.dns:
            out.append(f"dhcp-option=option:dns-server,{','.join(map(str, site.dns))}\n")
        if site.domain:
            out.append(f"domain={quoting.dnsmasq_word(site.domain)}\n")
        out.append(f"dhcp-boot={layout.BOOTFILE},,{site.address}\n")
        for host in served_hosts(spec, site):
            out.append(f"dhcp-host={host.mac},{host.ip},{quoting.dnsmasq_word(host.name)}\n")
    return "".join(out)


def kea_config(spec: Spec, site: Site) -> dict[str, Any]:
    assert site.subnet is not None and site.range is not None
    options: list[dict[str, str]] = []
    if site.router:
        options.append({"name": "routers", "data": str(site.router)})
    if site.dns:
        options.append({"name": "domain-name-servers", "data": ", ".join(map(str, site.dns))})
    if site.domain:
        options.append({"name": "domain-name", "data": site.domain})
    subnet: dict[str, Any] = {
        "id": 1,
        "subnet": str(site.subnet),
        "pools": [{"pool": f"{site.range[0]} - {site.range[1]}"}],
        "option-data": options,
        "next-server": str(site.address),
        "boot-file-name": layout.BOOTFILE,
        "reservations": [
            {"hw-address": h.mac, "ip-address": str(h.ip), "hostname": h.name}
            for h in served_hosts(spec, site)
        ],
    }
    return {"Dhcp4": {
        "interfaces-config": {"interfaces": ["*"]},
        "lease-database": {"type": "memfile", "persist": False},
        "valid-lifetime": site.lease_time,
        "subnet4": [subnet],
    }}


def render_kea(spec: Spec, site: Site) -> str:
    return json.dumps(kea_config(spec, site), indent=2) + "\n"


def render_dhcp(spec: Spec, site: Site) -> dict[str, str]:
    """Paths relative to the bundle's etc/ -> contents, for the spec's DHCP mode."""
    if site.mode == "server":
        return {"dhcpd.conf": render_isc(spec, site), "dnsmasq.conf": render_dnsmasq(spec, site),
                "kea-dhcp4.json": render_kea(spec, site)}
    if site.mode == "proxy":
        return {"dnsmasq.conf": render_dnsmasq(spec, site)}
    return {}
