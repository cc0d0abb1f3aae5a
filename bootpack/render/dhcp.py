"""DHCP snippets for the three servers people run: ISC dhcpd, dnsmasq and Kea.

Server mode hands out addresses from the pool and fixed addresses to known hosts, and tells PXE
clients where their loader is. Proxy mode (dnsmasq only) leaves addresses to the LAN's existing
server and answers PXE clients with boot data alone.

Each client gets the loader of its chain (loaders.chains), chosen by DHCP option 93, the client
system architecture (RFC 4578), unless its host entry forces one (hosts[].chain):
  0     BIOS             -> pxelinux.0 over TFTP
  7, 9  x86-64 UEFI      -> bootx64.efi (Debian's signed shim) over TFTP, or snponly.efi (iPXE)
                            when the bundle carries ipxe and not uefi, or serves in proxy mode
                            (Debian's GRUB cannot boot behind a proxy DHCP: it takes its TFTP
                            server from the LAN server's ACK)
  16    x86-64 UEFI HTTP -> http://SERVER/snponly.efi (or bootx64.efi without ipxe), with option 60
                            "HTTPClient" (the firmware ignores an HTTP boot offer without it)
iPXE does DHCP again and would be handed itself forever (Debian's 2019 build has no embedded
script): a UEFI client whose user class (option 77) is "iPXE" gets the URL of the iPXE script
instead of the binary. A BIOS client whose NIC ROM is iPXE (QEMU's, many flashed NICs) stays on
the bios chain but gets that script URL too: iPXE then fetches kernel and initrd itself, about
4x faster than plain pxelinux.0 through iPXE's PXE interface and 9x lpxelinux.0 (docs/speed.md),
from the same entries and hosts (behind a proxy DHCP by its TFTP name). With
loaders.bios_ipxe = false it gets plain pxelinux.0 (pxelinux-ipxe.0) instead.
  11    arm64 UEFI       -> bootaa64.efi (Debian's signed arm64 shim) over TFTP
next-server is the same server for every architecture.
"""

from __future__ import annotations

import json
from typing import Any

from ..bundle import layout
from ..spec.model import CHAINS, Chain, Host, Spec
from ..spec.site import Site
from . import quoting
from .common import HEADER

ARCH_BIOS = 0
ARCH_UEFI_X64 = (7, 9)  # 7 is what OVMF and most firmware send; 9 is what RFC 4578 says
ARCH_UEFI_X64_HTTP = 16
ARCH_UEFI_ARM64 = 11  # what AAVMF and arm64 servers' firmware send
HTTP_CLIENT = "HTTPClient"
IPXE_USER_CLASS = "iPXE"  # option 77 as iPXE sends it (the bare word, not RFC 3004's format)
BOOT_FILES: dict[Chain, str] = {"bios": layout.BOOTFILE, "uefi": layout.UEFI_BOOTFILE,
                                "ipxe": layout.IPXE_BOOTFILE,
                                "uefi-arm64": layout.UEFI_ARM64_BOOTFILE}


def uefi_chain(spec: Spec, site: Site) -> Chain:
    """The chain an x86-64 UEFI PXE client (option 93 = 7 or 9) gets unless forced.

    uefi (shim -> GRUB) boots with Secure Boot on or off, so it wins in server mode; behind a
    proxy DHCP Debian's GRUB cannot find its server, so ipxe wins there when it is carried."""
    chains = spec.loaders.chains
    if "ipxe" in chains and ("uefi" not in chains or site.mode == "proxy"):
        return "ipxe"
    return "uefi"


def http_boot_chain(spec: Spec) -> Chain:
    """The chain a UEFI HTTP boot client (option 93 = 16) gets: iPXE when carried (measured to
    boot end to end), else shim."""
    return "ipxe" if "ipxe" in spec.loaders.chains else "uefi"


def http_boot_url(spec: Spec, site: Site) -> str:
    """What a UEFI HTTP boot client loads, from the HTTP server."""
    return f"{site.http_base}/{BOOT_FILES[http_boot_chain(spec)]}"


def ipxe_script_url(site: Site) -> str:
    """What iPXE gets when it asks (user class "iPXE"): its script, over HTTP."""
    return f"{site.http_base}/{layout.IPXE_SCRIPT}"


def bios_ipxe_file(spec: Spec, site: Site) -> str:
    """What a BIOS client whose PXE ROM is iPXE (user class "iPXE") gets on the bios chain: the
    iPXE script (loaders.bios_ipxe), else plain pxelinux.0. Behind a proxy DHCP the script by
    its TFTP name, from a pxe-service: QEMU's iPXE ROM took the URL as the proxy reply's file
    name (no pxe-service) and fetched nothing. Every other BIOS client gets layout.BOOTFILE
    (lpxelinux.0: own TCP/IP stack, HTTP on any ROM)."""
    if not spec.bios_ipxe_scripts:
        return layout.IPXE_BIOS_BOOTFILE
    return layout.IPXE_SCRIPT if site.mode == "proxy" else ipxe_script_url(site)


def forced(spec: Spec, chain: Chain) -> list[str]:
    """MACs of the hosts forced to `chain`, whatever their option 93 says."""
    return [h.mac for h in spec.hosts if h.chain == chain and chain in spec.loaders.chains]


def _forced_any(spec: Spec) -> list[str]:
    return [h.mac for h in spec.hosts if h.chain is not None and h.chain in spec.loaders.chains]


# --- ISC dhcpd ---------------------------------------------------------------------------------

ISC_ARCH = "bootpack-arch"


def _isc_hw(mac: str) -> str:
    return f"hardware = 01:{mac}"


def _isc_boot(spec: Spec, site: Site, indent: str) -> list[str]:
    """The if/elsif chain that picks a client's boot file (first match wins)."""
    chains = spec.loaders.chains
    rules: list[tuple[str, list[str]]] = []
    uefi_arch = "(" + " or ".join(f"option {ISC_ARCH} = 00:{a:02x}" for a in ARCH_UEFI_X64) + ")"
    # dhcpd reads `if (` as a C-style condition that ends at its `)`: no test starts with one.
    ipxe_client = f'exists user-class and option user-class = "{IPXE_USER_CLASS}"'
    for chain in ("bios", "uefi", "uefi-arm64"):  # ipxe: below, with its script
        macs = forced(spec, chain)
        if macs:
            rules.append((" or ".join(_isc_hw(m) for m in macs),
                          [f'filename "{BOOT_FILES[chain]}";']))
    if "ipxe" in chains:
        script = [f'filename "{ipxe_script_url(site)}";']
        if macs := forced(spec, "ipxe"):
            hw = "(" + " or ".join(_isc_hw(m) for m in macs) + ")"
            rules += [(f"{ipxe_client} and {hw}", script), (hw, [f'filename "{layout.IPXE_BOOTFILE}";'])]
        rules.append((f"{ipxe_client} and {uefi_arch}", script))
    if "bios" in chains:
        # BIOS: no option 93 (a plain DHCP client, e.g. iPXE's) or 0
        bios_arch = f"(not exists {ISC_ARCH} or option {ISC_ARCH} = 00:{ARCH_BIOS:02x})"
        rules.append((f"{ipxe_client} and {bios_arch}", [f'filename "{bios_ipxe_file(spec, site)}";']))
    if "uefi" in chains or "ipxe" in chains:
        rules.append((uefi_arch, [f'filename "{BOOT_FILES[uefi_chain(spec, site)]}";']))
        rules.append((f"option {ISC_ARCH} = 00:{ARCH_UEFI_X64_HTTP:02x}",
                      [f'option vendor-class-identifier "{HTTP_CLIENT}";',
                       f'filename "{http_boot_url(spec, site)}";']))
    if "uefi-arm64" in chains:
        rules.append((f"option {ISC_ARCH} = 00:{ARCH_UEFI_ARM64:02x}",
                      [f'filename "{layout.UEFI_ARM64_BOOTFILE}";']))
    default = [f'filename "{layout.BOOTFILE}";'] if "bios" in chains else []
    if not rules:
        return [f"{indent}{line}\n" for line in default]
    out: list[str] = []
    for index, (test, body) in enumerate(rules):
        out.append(f"{indent}{'if' if index == 0 else '} elsif'} {test} {{\n")
        out += [f"{indent}  {line}\n" for line in body]
    if default:
        out.append(f"{indent}}} else {{\n")
        out += [f"{indent}  {line}\n" for line in default]
    out.append(f"{indent}}}\n")
    return out


def served_hosts(spec: Spec, site: Site) -> list[Host]:
    """Hosts with a fixed address that fits the served subnet."""
    dropped = frozenset(site.dropped_hosts)  # a set: serve may drop many of many hosts
    return [h for h in spec.hosts if h.ip is not None and h.name not in dropped
            and (site.subnet is None or h.ip in site.subnet)]


def render_isc(spec: Spec, site: Site) -> str:
    assert site.subnet is not None and site.range is not None
    out = [HEADER, quoting.one_line(f"# bundle {spec.bundle.name} {spec.bundle.version}",
                                    "dhcpd.conf") + "\n",
           "authoritative;\n", "allow booting;\n", "allow bootp;\n",
           f"option {ISC_ARCH} code 93 = unsigned integer 16;  # client system architecture\n",
           f"default-lease-time {site.lease_time};\n", f"max-lease-time {site.lease_time};\n\n",
           f"subnet {site.subnet.network_address} netmask {site.subnet.netmask} {{\n",
           f"  range {site.range[0]} {site.range[1]};\n"]
    if site.router:
        out.append(f"  option routers {site.router};\n")
    if site.dns:
        out.append(f"  option domain-name-servers {', '.join(map(str, site.dns))};\n")
    if site.domain:
        out.append(f"  option domain-name {quoting.dhcpd_string(site.domain)};\n")
    out += [f"  next-server {site.address};\n", *_isc_boot(spec, site, "  "), "}\n"]
    for host in served_hosts(spec, site):
        # No filename here: a host-level filename would override the architecture choice.
        out.append(
            f"\nhost {quoting.dhcpd_word(host.name)} {{\n  hardware ethernet {host.mac};\n"
            f"  fixed-address {host.ip};\n  option host-name {quoting.dhcpd_string(host.name)};\n"
            f"  next-server {site.address};\n}}\n"
        )
    return "".join(out)


# --- dnsmasq -----------------------------------------------------------------------------------


def _dnsmasq_tags(spec: Spec, site: Site) -> list[str]:
    """Tag rules (dnsmasq applies tag-if lines in order): each client ends with at most one of
    bp-bios, bp-uefi, bp-ipxe, bp-ipxe-script, bp-http, bp-arm64."""
    out = [f"dhcp-match=set:bp-arch-uefi,option:client-arch,{a}\n" for a in ARCH_UEFI_X64]
    out.append(f"dhcp-match=set:bp-arch-http,option:client-arch,{ARCH_UEFI_X64_HTTP}\n")
    arm64 = "uefi-arm64" in spec.loaders.chains
    if arm64:
        out.append(f"dhcp-match=set:bp-arch-arm64,option:client-arch,{ARCH_UEFI_ARM64}\n")
    for chain in CHAINS:
        macs = forced(spec, chain)
        out += [f"dhcp-mac=set:bp-force-{chain},{mac}\n" for mac in macs]
        if macs:
            out.append(f"tag-if=set:bp-forced,tag:bp-force-{chain}\n")
    if {"ipxe", "bios"} & set(spec.loaders.chains):
        out.append(f"dhcp-userclass=set:bp-ipxe-client,{IPXE_USER_CLASS}\n")
    if "ipxe" in spec.loaders.chains:
        # iPXE asking again (ours, or a NIC's iPXE ROM on a UEFI machine): its script, not itself.
        out += ["tag-if=set:bp-ipxe-script,tag:bp-ipxe-client,tag:bp-arch-uefi,tag:!bp-forced\n",
                "tag-if=set:bp-ipxe-script,tag:bp-ipxe-client,tag:bp-force-ipxe\n"]
    if arm64:  # a forced chain wins over option 93; without one, option 93 decides
        out += ["tag-if=set:bp-arm64,tag:bp-force-uefi-arm64\n",
                "tag-if=set:bp-arm64,tag:bp-arch-arm64,tag:!bp-forced\n"]
    out += ["tag-if=set:bp-uefi,tag:bp-force-uefi\n",
            "tag-if=set:bp-ipxe,tag:bp-force-ipxe,tag:!bp-ipxe-script\n",
            f"tag-if=set:bp-{uefi_chain(spec, site)},tag:bp-arch-uefi,tag:!bp-forced,"
            "tag:!bp-ipxe-script\n",
            "tag-if=set:bp-http,tag:bp-arch-http,tag:!bp-forced\n"]
    others = "tag:!bp-uefi,tag:!bp-ipxe,tag:!bp-ipxe-script,tag:!bp-http,tag:!bp-arm64"
    if "bios" in spec.loaders.chains:  # a BIOS iPXE ROM: bios_ipxe_file (bp-bios-ipxe)
        out.append(f"tag-if=set:bp-bios-ipxe,tag:bp-ipxe-client,tag:!bp-forced,{others}\n")
    out.append(f"tag-if=set:bp-bios,tag:!bp-bios-ipxe,{others}\n")
    return out


def _dnsmasq_uefi_boot(spec: Spec, site: Site) -> list[str]:
    """dhcp-boot lines for the UEFI chains (server and proxy mode alike). UEFI firmware shows no
    PXE menu: the offer itself carries the file and the server (in proxy mode no pxe-service, so
    no option 43 menu that would send the client to port 4011 first)."""
    chains = spec.loaders.chains
    out = [f"dhcp-boot=tag:bp-{c},{BOOT_FILES[c]},,{site.address}\n" for c in ("uefi", "ipxe")
           if c in chains]
    if "ipxe" in chains:
        out.append(f"dhcp-boot=tag:bp-ipxe-script,{ipxe_script_url(site)}\n")
    return out


def render_dnsmasq(spec: Spec, site: Site) -> str:
    assert site.subnet is not None
    out = [HEADER, quoting.one_line(f"# bundle {spec.bundle.name} {spec.bundle.version}",
                                    "dnsmasq.conf") + "\n",
           "port=0\n",  # DHCP only: no DNS server
           "log-dhcp\n"]
    netmask = site.subnet.netmask
    chains = spec.loaders.chains
    out += _dnsmasq_tags(spec, site)
    if site.mode == "proxy":
        out.append(f"dhcp-range={site.subnet.network_address},proxy,{netmask}\n")
        if "bios" in chains:
            title = quoting.dnsmasq_string(spec.menu.title)
            for tag, file in (("bp-bios", layout.BOOTFILE), ("bp-bios-ipxe", bios_ipxe_file(spec, site))):
                # pxe-service names a .0 file without its ".0", which dnsmasq appends to a name
                # without a dot (ipxe/boot.ipxe it hands over as it is)
                out.append(f"pxe-service=tag:{tag},x86PC,{title},{file.removesuffix('.0')},"
                           f"{site.address}\n")
        out += _dnsmasq_uefi_boot(spec, site)
        if "uefi-arm64" in chains:
            out.append(f"dhcp-boot=tag:bp-arm64,{layout.UEFI_ARM64_BOOTFILE},,{site.address}\n")
    else:
        assert site.range is not None
        out.append(f"dhcp-range={site.range[0]},{site.range[1]},{netmask},{site.lease_time}\n")
        if site.router:
            out.append(f"dhcp-option=option:router,{site.router}\n")
        if site.dns:
            out.append(f"dhcp-option=option:dns-server,{','.join(map(str, site.dns))}\n")
        if site.domain:
            out.append(f"domain={quoting.dnsmasq_word(site.domain)}\n")
        if "bios" in chains:
            ipxe_rom = bios_ipxe_file(spec, site)
            server = "" if ipxe_rom.startswith("http://") else f",,{site.address}"
            out += [f"dhcp-boot=tag:bp-bios,{layout.BOOTFILE},,{site.address}\n",
                    f"dhcp-boot=tag:bp-bios-ipxe,{ipxe_rom}{server}\n"]
        out += _dnsmasq_uefi_boot(spec, site)
        if "uefi" in chains or "ipxe" in chains:
            out += [f"dhcp-boot=tag:bp-http,{http_boot_url(spec, site)}\n",
                    f"dhcp-option-force=tag:bp-http,option:vendor-class,{HTTP_CLIENT}\n"]
        if "uefi-arm64" in chains:
            out.append(f"dhcp-boot=tag:bp-arm64,{layout.UEFI_ARM64_BOOTFILE},,{site.address}\n")
        for host in served_hosts(spec, site):
            out.append(f"dhcp-host={host.mac},{host.ip},{quoting.dnsmasq_word(host.name)}\n")
    return "".join(out)


# --- Kea ---------------------------------------------------------------------------------------


def _kea_macs(macs: list[str]) -> str:
    return " or ".join(f"pkt4.mac == 0x{m.replace(':', '')}" for m in macs)


def kea_classes(spec: Spec, site: Site) -> list[dict[str, Any]]:
    """One class per boot file, mutually exclusive (later classes test membership of earlier
    ones, and Kea evaluates them in this order)."""
    chains = spec.loaders.chains
    classes: list[dict[str, Any]] = []
    if not chains:
        return classes
    arch = "(" + " or ".join(f"option[93].hex == 0x{a:04x}" for a in ARCH_UEFI_X64) + ")"
    if not_forced := _forced_any(spec):
        arch = f"({arch} and not ({_kea_macs(not_forced)}))"
    earlier: list[str] = []

    def add(name: str, test: str | None, fields: dict[str, Any]) -> None:
        nots = [f"not member('{c}')" for c in earlier]
        if test and nots:
            test = f"({test})"
        test = " and ".join(([test] if test else []) + nots)
        classes.append({"name": name, "test": test, **fields})
        earlier.append(name)

    def tftp(chain: Chain) -> dict[str, Any]:
        return {"next-server": str(site.address), "boot-file-name": BOOT_FILES[chain]}

    if "uefi-arm64" in chains:
        test = f"option[93].hex == 0x{ARCH_UEFI_ARM64:04x}"
        if not_forced:
            test = f"({test} and not ({_kea_macs(not_forced)}))"
        if macs := forced(spec, "uefi-arm64"):
            test = f"{test} or {_kea_macs(macs)}"
        add("bootpack-arm64", test, tftp("uefi-arm64"))
    if "ipxe" in chains:
        mine = f"{arch} or {_kea_macs(m)}" if (m := forced(spec, "ipxe")) else arch
        add("bootpack-ipxe-script",
            f"substring(option[77].hex,0,{len(IPXE_USER_CLASS)}) == '{IPXE_USER_CLASS}' and ({mine})",
            {"boot-file-name": ipxe_script_url(site)})
    default = uefi_chain(spec, site)
    for chain in ("uefi", "ipxe"):
        if chain in chains:
            # Kea's expressions have no boolean literals: a chain nobody gets has no class.
            tests = ([arch] if chain == default else []) + \
                ([_kea_macs(macs)] if (macs := forced(spec, chain)) else [])
            if tests:
                add(f"bootpack-{chain}", " or ".join(tests), tftp(chain))
    if "uefi" in chains or "ipxe" in chains:
        http = f"option[93].hex == 0x{ARCH_UEFI_X64_HTTP:04x}"
        if not_forced:
            http += f" and not ({_kea_macs(not_forced)})"
        add("bootpack-http", http, {"boot-file-name": http_boot_url(spec, site), "option-data": [
            {"name": "vendor-class-identifier", "data": HTTP_CLIENT}]})
    if "bios" in chains:
        # a BIOS iPXE ROM (no option 93, or 0): bios_ipxe_file
        test = (f"substring(option[77].hex,0,{len(IPXE_USER_CLASS)}) == '{IPXE_USER_CLASS}' and "
                f"(not option[93].exists or option[93].hex == 0x{ARCH_BIOS:04x})")
        if not_forced:
            test += f" and not ({_kea_macs(not_forced)})"
        add("bootpack-bios-ipxe", test,
            {"next-server": str(site.address), "boot-file-name": bios_ipxe_file(spec, site)})
        add("bootpack-bios", None, tftp("bios"))  # everyone else
    return classes


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
        "next-server": str(site.address),  # the classes choose the file
        "reservations": [
            {"hw-address": h.mac, "ip-address": str(h.ip), "hostname": h.name}
            for h in served_hosts(spec, site)
        ],
    }
    return {"Dhcp4": {
        "interfaces-config": {"interfaces": ["*"]},
        "lease-database": {"type": "memfile", "persist": False},
        "valid-lifetime": site.lease_time,
        **({"client-classes": classes} if (classes := kea_classes(spec, site)) else {}),
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
