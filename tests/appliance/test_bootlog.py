"""The log parsers, on lines recorded from this project's appliance (tests/appliance/data/).

appliance-boot.log is the container log of test_status's boot of the known host (a marker VM,
dhcpd server mode): dhcpd, tftpd (through the syslog listener) and nginx with bootpack's
access format, as the supervisor prefixes them. dnsmasq-proxy.log is a proxy-mode appliance
answering a PXE client (the DHCP probe with --pxe).
"""

from __future__ import annotations

from pathlib import Path

from bootpack.appliance.bootlog import (
    DhcpEvent,
    FileEvent,
    TftpError,
    config_mac,
    file_kind,
    image_of,
    parse_line,
)
from bootpack.appliance.metrics import Metrics
from bootpack.appliance.timeline import Timeline
from bootpack.spec.load import parse_spec

DATA = Path(__file__).with_name("data")


def recorded(name: str) -> list[tuple[str, str]]:
    lines = []
    for raw in (DATA / name).read_text().splitlines():
        service, sep, text = raw.partition("| ")
        if sep:
            lines.append((service.strip(), text))
    return lines


def test_dhcpd_lines() -> None:
    assert parse_line("dhcpd", "DHCPDISCOVER from 52:54:00:a7:00:01 via eth0") == \
        DhcpEvent(message="discover", mac="52:54:00:a7:00:01")
    assert parse_line("dhcpd", "DHCPOFFER on 10.76.76.100 to 52:54:00:a7:00:01 via eth0") == \
        DhcpEvent(message="offer", mac="52:54:00:a7:00:01", ip="10.76.76.100")
    assert parse_line("dhcpd", "DHCPREQUEST for 10.76.76.100 (10.76.76.10) from 52:54:00:a7:00:01 "
                      "via eth0") == DhcpEvent(message="request", mac="52:54:00:a7:00:01",
                                               ip="10.76.76.100")
    assert parse_line("dhcpd", "DHCPACK on 10.76.76.100 to 52:54:00:a7:00:01 (marker) via eth0") == \
        DhcpEvent(message="ack", mac="52:54:00:a7:00:01", ip="10.76.76.100")
    assert parse_line("dhcpd", "Listening on LPF/eth0/02:42:0a:4c:4c:0a/10.76.76.0/25") is None


def test_tftpd_and_nginx_lines() -> None:
    assert parse_line("tftpd", "RRQ from 10.76.76.100 filename pxelinux.0") == \
        FileEvent(protocol="tftp", client="10.76.76.100", path="pxelinux.0", kind="loader")
    assert parse_line("tftpd", "RRQ from 10.76.76.100 filename images/marker/vmlinuz") == \
        FileEvent(protocol="tftp", client="10.76.76.100", path="images/marker/vmlinuz", kind="kernel")
    assert parse_line("tftpd", "sending NAK (1, File not found) to 10.76.76.101") == \
        TftpError(client="10.76.76.101", code=1, text="File not found")
    event = parse_line("http", "bootpack-access 10.76.76.10 GET /images/marker/vmlinuz 206 1 0.000")
    assert event == FileEvent(protocol="http", client="10.76.76.10", path="images/marker/vmlinuz",
                              kind="kernel", status=206, bytes=1, seconds=0.0)
    assert parse_line("http", "bootpack-access 10.76.76.1 GET /bootpack/api/status 401 15 0.019") == \
        FileEvent(protocol="http", client="10.76.76.1", path="bootpack/api/status", kind="other",
                  ok=False, status=401, bytes=15, seconds=0.019)
    assert parse_line("http", '2026/11/22 19:23:07 [error] 31#31: *13 open() "/srv/x" failed') is None
    assert parse_line("nfs", "RRQ from 10.0.0.1 filename pxelinux.0") is None  # by service


def test_kinds_from_the_bundle_layout() -> None:
    assert [file_kind(p) for p in ("pxelinux.0", "ldlinux.c32", "pxelinux.cfg/default",
                                   "pxelinux.cfg/01-52-54-00-a7-00-01", "images/a/vmlinuz",
                                   "images/a/initrd.img", "images/a/ramdisk.img",
                                   "images/a/squashfs.img", "favicon.ico", "bootpack/")] == \
        ["loader", "loader", "config", "config", "kernel", "initrd", "initrd", "root", "other", "other"]
    assert config_mac("pxelinux.cfg/01-52-54-00-a7-00-01") == "52:54:00:a7:00:01"
    assert config_mac("pxelinux.cfg/C0A80A") is None
    # the ipxe chain: snponly.efi is the loader, its scripts are its config
    assert [file_kind(p) for p in ("snponly.efi", "ipxe/boot.ipxe", "ipxe/default.ipxe",
                                   "ipxe/hosts/52-54-00-a7-00-01.ipxe")] == \
        ["loader", "config", "config", "config"]
    assert config_mac("/ipxe/hosts/52-54-00-a7-00-01.ipxe") == "52:54:00:a7:00:01"
    assert config_mac("ipxe/default.ipxe") is None
    assert image_of("/images/marker/vmlinuz") == "marker" and image_of("pxelinux.0") is None


def test_the_recorded_appliance_boot() -> None:
    lines = recorded("appliance-boot.log")
    events = [e for e in (parse_line(s, t) for s, t in lines) if e is not None]
    kinds = {(type(e).__name__, getattr(e, "message", None) or getattr(e, "kind", None)) for e in events}
    for wanted in (("DhcpEvent", "discover"), ("DhcpEvent", "offer"), ("DhcpEvent", "request"),
                   ("DhcpEvent", "ack"), ("FileEvent", "loader"), ("FileEvent", "config"),
                   ("FileEvent", "kernel"), ("FileEvent", "initrd")):
        assert wanted in kinds, wanted
    # replayed into a timeline, it is a whole boot of the known host up to the initrd's report
    spec = parse_spec({"schema": 1, "bundle": {"name": "b", "version": "1.0.0"},
                       "server": {"address": "10.76.76.10"}, "dhcp": {"mode": "none"},
                       "images": {"marker": {"kernel": "vmlinuz", "initrd": "initrd.img"}},
                       "entries": [{"name": "marker", "image": "marker"}],
                       "hosts": [{"name": "known", "mac": "52:54:00:a7:00:01"}]})
    timeline = Timeline(spec, own_address="10.76.170.10", file_size=lambda p: 1000,
                        listener=Metrics(["marker"]))
    for event in events:
        timeline.feed(event)
    [host] = timeline.view()
    assert host.name == "known" and host.boots[-1].config == "per-host"
    assert list(host.boots[-1].stages)[-2:] == ["kernel", "initrd"]


def test_dnsmasq_proxy_lines() -> None:
    assert parse_line("dnsmasq", "dnsmasq-dhcp[17]: 52060833 PXE(eth0) 52:54:00:a7:0e:0e proxy") == \
        DhcpEvent(message="pxe", mac="52:54:00:a7:0e:0e", mode="proxy")
    assert parse_line("dnsmasq", "dnsmasq-dhcp[17]: 52060833 sent size: 17 option: 97 "
                      "client-machine-id  00:00:01:02:03:04:05:06:07:08:09:0a:0b:0c...") is None
    assert parse_line("dnsmasq", "PXE(eth0) 10.0.0.5 52:54:00:a7:0e:0e pxelinux.0") == \
        DhcpEvent(message="pxe", mac="52:54:00:a7:0e:0e", ip="10.0.0.5", mode="proxy",
                  bootfile="pxelinux.0")
    assert parse_line("dnsmasq", "dnsmasq-dhcp[7]: 2870443133 DHCPACK(eth0) 10.0.0.5 "
                      "52:54:00:a7:0e:0e") == \
        DhcpEvent(message="ack", mac="52:54:00:a7:0e:0e", ip="10.0.0.5", mode="proxy")
    events = [parse_line(s, t) for s, t in recorded("dnsmasq-proxy.log")]
    assert [e for e in events if e is not None] == [
        DhcpEvent(message="pxe", mac="52:54:00:a7:0e:0e", mode="proxy")]
