"""The log parsers, on lines recorded from this project's appliance (tests/appliance/data/).

appliance-boot.log is the container log of test_status's boot of the known host (a marker VM,
dhcpd server mode): dhcpd, tftpd (through the syslog listener) and nginx with bootpack's
access format, as the supervisor prefixes them. dnsmasq-proxy.log is a proxy-mode appliance
answering a PXE client (the DHCP probe with --pxe). nfs-mount.log is a server-mode appliance with
boot tracking on (Ganesha's CLIENTID at DEBUG, rpcbind -d) while the host `nfshost` (a marker VM)
mounts its NFSv4.1 root, the health check lists the export every 10 s (libnfs, NFSv4.0, from the
appliance's own address) and `nfs-ls` on the test host lists it over NFSv3 (libnfs: its MOUNT
lookup through rpcbind) and NFSv4.0; recorded before the supervisor hid the debug noise.
"""

from __future__ import annotations

from pathlib import Path

from bootpack.appliance.bootlog import (
    DhcpEvent,
    FileEvent,
    NfsMount,
    TftpError,
    config_mac,
    file_kind,
    image_of,
    is_tracking_noise,
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
    # the ipxe chain: snponly.efi is the loader; boot.ipxe too (a BIOS iPXE ROM is handed it in
    # place of an NBP); the scripts it chains are the config
    assert [file_kind(p) for p in ("snponly.efi", "ipxe/boot.ipxe", "ipxe/default.ipxe",
                                   "ipxe/hosts/52-54-00-a7-00-01.ipxe")] == \
        ["loader", "loader", "config", "config"]
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


NFS_MAC = "52:54:00:a7:00:03"


def test_ganesha_and_rpcbind_lines() -> None:
    head = ("22/11/2026 22:03:26 : epoch 6b036642 : 2bc5221cd373 : nfs-ganesha-34[::ffff:10.75.134.100] "
            "[svc_11] ./src/Protocols/NFS/nfs4_op_create_session.c:146 :nfs4_op_create_session "
            ":CLIENT ID :DEBUG :")
    assert parse_line("nfs", head + "CREATE_SESSION client addr=::ffff:10.75.134.100 clientid=Epoch="
                      "0x6b036642 Counter=0x0000000b -------------------") == \
        NfsMount(client="10.75.134.100", version="4.1+", how="CREATE_SESSION")
    assert parse_line("nfs", head + "SETCLIENTID_CONFIRM client addr=::ffff:10.0.0.9 clientid=x") == \
        NfsMount(client="10.0.0.9", version="4.0", how="SETCLIENTID_CONFIRM")
    assert parse_line("rpcbind", "rpcbind: PMAP_GETPORT req for (100005, 3, tcp) from 10.75.134.1.2.9 :") \
        == NfsMount(client="10.75.134.1", version="3", how="MOUNT v3/tcp lookup (PMAP_GETPORT)")
    assert parse_line("rpcbind", "rpcbind: RPCB_GETADDR req for (100005, 3, udp) from 10.0.0.7.3.1: ") \
        == NfsMount(client="10.0.0.7", version="3", how="MOUNT v3/udp lookup (RPCB_GETADDR)")
    # the NFS program itself, and Ganesha registering its MOUNT service, are no mount
    assert parse_line("rpcbind", "rpcbind: PMAP_GETPORT req for (100003, 3, tcp) from 10.0.0.7.2.11 :") \
        is None
    assert parse_line("rpcbind", "rpcbind: RPCB_SET request for (100005, 3, tcp, 0.0.0.0.162.39) :") is None
    assert parse_line("nfs", head + "EXCHANGE_ID pnfs_flags 0x00060000 eia_flags 0x00000101") is None


def test_the_recorded_nfs_mount_and_its_noise() -> None:
    lines = recorded("nfs-mount.log")
    events = [e for e in (parse_line(s, t) for s, t in lines) if e is not None]
    mounts = [e for e in events if isinstance(e, NfsMount)]
    assert {(m.client, m.version) for m in mounts} == {
        ("10.75.134.10", "4.0"),  # the health check, from the appliance's own address
        ("10.75.134.100", "4.1+"),  # the VM's kernel mounting its root
        ("10.75.134.1", "3"), ("10.75.134.1", "4.0")}  # nfs-ls on the test host
    # the debug output tracking turns on stays out of the container log; events and the daemons'
    # own messages stay in it
    hidden = [(s, t) for s, t in lines if is_tracking_noise(s, t)]
    assert len(hidden) > 100
    assert all(parse_line(s, t) is None for s, t in hidden)
    assert not [t for s, t in hidden if s not in ("nfs", "rpcbind")]
    assert not [t for s, t in hidden if ":EVENT :" in t or ":CRIT :" in t or ":WARN :" in t]
    # replayed: nfshost's boot reaches `root` by its NFS mount; the health check starts no boot
    spec = parse_spec({"schema": 1, "bundle": {"name": "b", "version": "1.0.0"},
                       "server": {"address": "10.75.134.10"},
                       "dhcp": {"mode": "none", "subnet": "10.75.134.0/25"},
                       "images": {"marker": {"kernel": "vmlinuz", "initrd": "initrd.img"}},
                       "entries": [{"name": "shared", "image": "marker", "root": "nfs"}],
                       "hosts": [{"name": "nfshost", "mac": NFS_MAC}]})
    metrics = Metrics(["shared"])
    timeline = Timeline(spec, own_address="10.75.134.10", file_size=lambda p: 1000, listener=metrics)
    for event in events:
        timeline.feed(event)
    [host] = timeline.view()
    assert host.name == "nfshost" and host.stage == "root"
    assert list(host.boots[-1].stages)[-3:] == ["kernel", "initrd", "root"]
    root = [e for e in host.boots[-1].events if e.stage == "root"]
    assert [e.detail for e in root] == ["nfs v4.1+ mount by 10.75.134.100 (CREATE_SESSION)"]
    assert b'bootpack_files_served_total{kind="root",protocol="nfs"} 3.0' in metrics.exposition()
