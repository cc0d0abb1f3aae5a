"""The appliance's pure parts and its supervisor, without Docker or root."""

from __future__ import annotations

import io
import json
import signal
import sys
import threading
import time
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from bootpack.appliance import dhcp_probe
from bootpack.appliance.runtime import Daemon, Paths, render_runtime, runtime_site
from bootpack.appliance.state import DaemonState, ServeState
from bootpack.appliance.supervisor import Output, Supervisor
from bootpack.cli import main
from bootpack.errors import BootpackError
from bootpack.render import render_bundle_configs
from bootpack.render.nfs import nfs_export_list
from bootpack.spec.load import parse_spec
from bootpack.spec.model import Spec


def make_spec(**changes: Any) -> Spec:
    data: dict[str, Any] = {
        "schema": 1,
        "bundle": {"name": "t", "version": "1"},
        "server": {"address": "192.168.50.2"},
        "dhcp": {"mode": "server", "subnet": "192.168.50.0/24",
                 "range": ["192.168.50.100", "192.168.50.150"], "router": "192.168.50.1"},
        "images": {"img": {"kernel": "k", "initrd": "i", "squashfs": "s"}},
        "entries": [{"name": "live", "image": "img", "root": "live"},
                    {"name": "nfs", "image": "img", "root": "nfs", "nfs_version": 4}],
        "hosts": [{"name": "a", "mac": "52:54:00:00:00:01", "ip": "192.168.50.20", "entry": "nfs"},
                  {"name": "b", "mac": "52:54:00:00:00:02", "ip": "192.168.50.21", "entry": "nfs",
                   "writable_root": True}],
    }
    for key, value in changes.items():
        data[key] = value
    return parse_spec(data)


PATHS = Paths(bundle="/srv/bootpack", runtime="/run/bootpack")


def test_same_network_other_address_moves_only_the_address() -> None:
    spec = make_spec()
    rs = runtime_site(spec, root="/srv/bootpack", address=IPv4Address("192.168.50.9"),
                      interface=IPv4Interface("192.168.50.9/24"))
    site = rs.site
    assert site.address == IPv4Address("192.168.50.9")
    assert site.subnet == IPv4Network("192.168.50.0/24")
    assert site.range == spec.dhcp.range and site.dropped_hosts == () and rs.warnings == ()


def test_other_subnet_moves_pool_and_drops_hosts() -> None:
    spec = make_spec()
    rs = runtime_site(spec, root="/srv/bootpack", address=IPv4Interface("10.9.8.7/24"))
    site = rs.site
    assert site.range == (IPv4Address("10.9.8.100"), IPv4Address("10.9.8.150"))
    assert site.dropped_hosts == ("a", "b") and site.router is None
    assert any("host a" in w for w in rs.warnings)
    files = render_bundle_configs(spec, site)
    assert "10.9.8.7" in files["tftpboot/pxelinux.cfg/default"]
    assert "192.168" not in files["tftpboot/pxelinux.cfg/default"]
    assert "fixed-address" not in files["etc/dhcpd.conf"]
    assert "range 10.9.8.100 10.9.8.150" in files["etc/dhcpd.conf"]
    # The dropped writable host falls back to the shared read-only root.
    assert all(not e.writable for e in nfs_export_list(spec, site))


def test_prefix_from_the_interface_and_explicit_range() -> None:
    spec = make_spec()
    rs = runtime_site(spec, root="/b", address=IPv4Address("10.1.0.5"),
                      interface=IPv4Interface("10.1.0.5/16"),
                      dhcp_range=(IPv4Address("10.1.3.1"), IPv4Address("10.1.3.9")))
    assert rs.site.subnet == IPv4Network("10.1.0.0/16")
    assert rs.site.range == (IPv4Address("10.1.3.1"), IPv4Address("10.1.3.9"))


def test_pool_that_does_not_fit_needs_range() -> None:
    with pytest.raises(BootpackError, match="--range"):
        runtime_site(make_spec(), root="/b", address=IPv4Interface("10.1.0.5/25"))
    # proxy mode needs no pool
    rs = runtime_site(make_spec(), root="/b", address=IPv4Interface("10.1.0.5/25"), mode="proxy")
    assert rs.site.mode == "proxy"


def test_address_outside_spec_subnet_without_prefix_is_an_error() -> None:
    with pytest.raises(BootpackError, match="prefix"):
        runtime_site(make_spec(), root="/b", address=IPv4Address("10.1.0.5"))


def test_pool_holding_server_address_is_refused() -> None:
    with pytest.raises(BootpackError, match="own address"):
        runtime_site(make_spec(), root="/b", address=IPv4Interface("192.168.50.120/24"))


def test_runtime_files_and_services() -> None:
    spec = make_spec()
    site = runtime_site(spec, root="/srv/bootpack", address=IPv4Interface("192.168.50.9/24"),
                        host_roots="/var/lib/bootpack/hosts").site
    rt = render_runtime(spec, site, PATHS, "eth1")
    names = [s.name for s in rt.services]
    assert names == ["dhcpd", "tftpd", "http", "rpcbind", "nfs"]
    tftpd = next(s for s in rt.services if s.name == "tftpd").argv
    assert "--secure" in tftpd and "--create" not in tftpd and "-c" not in tftpd
    assert tftpd[-1] == "/run/bootpack/tftpboot"
    assert next(s for s in rt.services if s.name == "dhcpd").argv[-1] == "eth1"
    nginx = rt.files["nginx.conf"]
    assert "autoindex off;" in nginx and "listen 192.168.50.9:80;" in nginx
    ganesha = rt.files["ganesha.conf"]
    assert "Clients = 192.168.50.0/24; Access_Type = RO;" in ganesha
    assert "Clients = 192.168.50.21/32; Access_Type = RW;" in ganesha
    assert 'Path = "/var/lib/bootpack/hosts/b";' in ganesha
    # NFSv4 owners as numbers (the image's ids, not the appliance's names for them).
    nfsv4 = ganesha[ganesha.index("NFSV4 {"):]
    nfsv4 = nfsv4[:nfsv4.index("}")]
    assert "Only_Numeric_Owners = true;" in nfsv4 and "Allow_Numeric_Owners = true;" in nfsv4
    # boot tracking off: no debug output asked of Ganesha or rpcbind
    assert "LOG {" not in ganesha and "-d" not in next(s for s in rt.services if s.name == "rpcbind").argv
    host_b = rt.files["tftpboot/pxelinux.cfg/01-52-54-00-00-00-02"]
    assert "root=nfs4:192.168.50.9:/var/lib/bootpack/hosts/b:vers=4,tcp" in host_b and " rw" in host_b
    host_a = rt.files["tftpboot/pxelinux.cfg/01-52-54-00-00-00-01"]
    assert "root=nfs4:192.168.50.9:/srv/bootpack/roots/img:vers=4,tcp" in host_a and " ro" in host_a
    # UEFI clients get the same choices from GRUB, rendered for the same runtime address.
    grub_b = rt.files["tftpboot/grub/hosts/52:54:00:00:00:02.cfg"]
    assert "'root=nfs4:192.168.50.9:/var/lib/bootpack/hosts/b:vers=4,tcp'" in grub_b
    assert "configfile '/grub/hosts/52:54:00:00:00:01.cfg'" in rt.files["tftpboot/grub/grub.cfg"]
    assert 'filename "bootx64.efi";' in rt.files["dhcpd.conf"]
    assert "location /grub/ {\n            root /run/bootpack/tftpboot;" in nginx


def test_proxy_and_off_modes() -> None:
    spec = make_spec()
    proxy = runtime_site(spec, root="/b", address=IPv4Interface("10.2.0.3/24"), mode="proxy").site
    rt = render_runtime(spec, proxy, PATHS, "eth0")
    assert rt.services[0].name == "dnsmasq"
    conf = rt.files["dnsmasq.conf"]
    assert "dhcp-range=10.2.0.0,proxy,255.255.255.0" in conf and "interface=eth0" in conf
    assert "dhcp-boot=tag:bp-uefi,bootx64.efi,,10.2.0.3" in conf
    off = runtime_site(spec, root="/b", address=IPv4Interface("10.2.0.3/24"), mode="none").site
    assert next(s.name for s in render_runtime(spec, off, PATHS, "eth0").services) == "tftpd"


def test_writable_root_needs_ip_and_nfs_entry() -> None:
    hosts = [{"name": "x", "mac": "52:54:00:00:00:09", "entry": "live", "writable_root": True}]
    with pytest.raises(BootpackError) as info:
        make_spec(hosts=hosts)
    assert "hosts[0].writable_root" in str(info.value) and "set hosts[0].ip" in str(info.value)
    assert "root = 'nfs'" in str(info.value)


def test_bundle_keeps_its_spec(tmp_path: Path) -> None:
    from tests.support.marker import write_artifacts

    write_artifacts(tmp_path)
    (tmp_path / "spec.toml").write_text(
        'schema = 1\n[bundle]\nname = "x"\nversion = "1"\n[server]\naddress = "10.0.2.2"\n'
        '[dhcp]\nmode = "proxy"\nsubnet = "10.0.2.0/24"\n'
        '[images.m]\nkernel = "vmlinuz"\ninitrd = "initrd.img"\n'
        '[[entries]]\nname = "m"\nimage = "m"\n')
    assert main(["-q", "build", str(tmp_path / "spec.toml"), "-o", str(tmp_path / "out")]) == 0
    manifest = json.loads((tmp_path / "out" / "bundle.json").read_text())
    assert "spec.json" in [row["path"] for row in manifest["files"]]
    from bootpack.appliance.serve import load_bundle_spec
    from bootpack.bundle import Bundle

    assert load_bundle_spec(Bundle.open(tmp_path / "out")).bundle.name == "x"


def test_dhcp_discover_and_offer_round_trip() -> None:
    packet = dhcp_probe.discover_packet("52:54:00:aa:bb:cc", 0x1234, pxe=True)
    assert packet[236:240] == dhcp_probe.MAGIC and b"PXEClient" in packet
    offer = bytearray(packet)
    offer[0] = 2
    offer[16:20] = bytes([10, 0, 0, 50])
    offer[20:24] = bytes([10, 0, 0, 1])
    options = bytes([53, 1, 2, 54, 4, 10, 0, 0, 1, 67, 10]) + b"pxelinux.0" + b"\xff"
    parsed = dhcp_probe.parse_offer(bytes(offer[:240]) + options, "10.0.0.1", 0x1234)
    assert parsed is not None
    assert (parsed.yiaddr, parsed.siaddr, parsed.file, parsed.server) == (
        "10.0.0.50", "10.0.0.1", "pxelinux.0", "10.0.0.1")
    assert dhcp_probe.parse_offer(bytes(offer[:240]) + options, "x", 0x9999) is None


def test_supervisor_restarts_with_backoff_and_stops(tmp_path: Path) -> None:
    out = io.StringIO()
    flag = tmp_path / "ran"
    crash = Daemon("crash", (sys.executable, "-c",
                                  f"open({str(flag)!r}, 'a').write('x'); print('bye'); raise SystemExit(3)"))
    stubborn = Daemon("stubborn", (sys.executable, "-c",
                                        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                        "print('up', flush=True); time.sleep(60)"))
    seen: list[dict[str, DaemonState]] = []
    sup = Supervisor([crash, stubborn], output=Output(out), on_change=seen.append,
                     first_delay=0.2, max_delay=0.8)
    thread = threading.Thread(target=sup.run, kwargs={"poll": 0.05})
    thread.start()
    time.sleep(2.0)
    state = seen[-1]
    assert state["stubborn"].state == "running"
    assert state["crash"].restarts >= 2
    start = time.monotonic()
    sup.stop()
    thread.join(15)
    assert not thread.is_alive() and time.monotonic() - start < 10
    text = out.getvalue()
    assert "crash   | bye" in text and "stubborn| up" in text
    assert "crash exited with status 3" in text and "ignored SIGTERM; killing it" in text
    assert seen[-1]["stubborn"].state == "stopped"
    assert signal.SIGTERM  # the supervisor sent it; the stubborn one was killed after the grace


def test_supervisor_restarts_dependents_after_their_dependency(tmp_path: Path) -> None:
    out = io.StringIO()
    base = Daemon("base", (sys.executable, "-c", "import time; time.sleep(0.3)"))
    user = Daemon("user", (sys.executable, "-c", "import time; time.sleep(60)"), after=("base",))
    seen: list[dict[str, DaemonState]] = []
    sup = Supervisor([base, user], output=Output(out), on_change=seen.append,
                     first_delay=0.1, max_delay=0.2)
    thread = threading.Thread(target=sup.run, kwargs={"poll": 0.05})
    thread.start()
    time.sleep(1.5)
    sup.stop()
    thread.join(15)
    assert seen[-1]["user"].restarts >= 1
    assert "restarting user after base" in out.getvalue()


def test_health_without_serve_is_unhealthy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--runtime-dir", str(tmp_path)]) == 1  # Docker reserves exit status 2
    assert "unhealthy" in capsys.readouterr().out


def test_serve_state_round_trips(tmp_path: Path) -> None:
    state = ServeState(pid=1, bundle="/b", digest="sha256:" + "0" * 64, interface="eth1",
                       address="127.0.0.1", subnet="127.0.0.0/8", mode="proxy",
                       http_base="http://127.0.0.1:9", loader="pxelinux.0", kernel=None, exports=(),
                       daemons={"tftpd": DaemonState(state="down", pid=None, restarts=2,
                                                     last_exit=1)})
    state.write(tmp_path)
    assert ServeState.read(tmp_path) == state
    assert json.loads((tmp_path / "state.json").read_text())["daemons"]["tftpd"]["restarts"] == 2


def test_unreadable_serve_state_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"pid": "x"}')
    with pytest.raises(BootpackError, match="unreadable"):
        ServeState.read(tmp_path)


def test_health_reads_the_first_loader_of_the_bundles_chains() -> None:
    from bootpack.appliance.runtime import first_loader
    from bootpack.spec import parse_spec
    from tests.support.specs import lab_data

    data = lab_data()
    assert first_loader(parse_spec(data)) == "pxelinux.0"
    data["loaders"] = {"chains": ["uefi"]}
    assert first_loader(parse_spec(data)) == "bootx64.efi"


def test_nginx_logs_for_the_timeline_and_proxies_the_status_site(tmp_path: Path) -> None:
    import shutil
    import subprocess

    spec = make_spec()
    site = runtime_site(spec, root="/srv/bootpack", address=IPv4Interface("192.168.50.9/24")).site
    plain = render_runtime(spec, site, PATHS, "eth1").files["nginx.conf"]
    assert "log_format bootpack 'bootpack-access $remote_addr" in plain
    assert "access_log /dev/stdout bootpack;" in plain and "location /bootpack/" not in plain
    nginx = render_runtime(spec, site, PATHS, "eth1", status_port=8067).files["nginx.conf"]
    assert "location /bootpack/ { proxy_pass http://127.0.0.1:8067;" in nginx
    assert "location = /metrics { proxy_pass http://127.0.0.1:8067;" in nginx
    assert "proxy_set_header X-Real-IP $remote_addr;" in nginx
    if shutil.which("nginx"):  # the real nginx parses it (test-only paths)
        conf = nginx.replace("/run/bootpack", str(tmp_path)).replace("listen 192.168.50.9:80",
                                                                    "listen 127.0.0.1:1")
        for sub in ("nginx/body", "nginx/proxy", "nginx/fastcgi", "nginx/uwsgi", "nginx/scgi"):
            (tmp_path / sub).mkdir(parents=True)
        (tmp_path / "nginx.conf").write_text(conf)
        result = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_ipxe_scripts_follow_the_runtime_address_and_proxy_mode_warns() -> None:
    """iPXE scripts carry the server's URL: serve renders them for its own address, nginx serves
    them from the runtime dir, and proxy mode hands UEFI clients iPXE, with a warning for Secure
    Boot machines."""
    spec = make_spec(loaders={"chains": ["bios", "uefi", "ipxe"]})
    rs = runtime_site(spec, root="/srv/bootpack", address=IPv4Interface("10.2.0.3/24"), mode="proxy")
    rt = render_runtime(spec, rs.site, PATHS, "eth0")
    assert "chain http://10.2.0.3/ipxe/default.ipxe" in rt.files["tftpboot/ipxe/boot.ipxe"]
    assert "root=nfs4:10.2.0.3:" in rt.files["tftpboot/ipxe/hosts/52-54-00-00-00-01.ipxe"]
    assert "location /ipxe/ {\n            root /run/bootpack/tftpboot;" in rt.files["nginx.conf"]
    conf = rt.files["dnsmasq.conf"]
    assert "dhcp-boot=tag:bp-ipxe,snponly.efi,,10.2.0.3\n" in conf
    assert "dhcp-boot=tag:bp-ipxe-script,http://10.2.0.3/ipxe/boot.ipxe\n" in conf
    assert any("Secure Boot on cannot boot" in w for w in rs.warnings), rs.warnings
    # without ipxe, the warning says GRUB stops behind a proxy and what to do
    plain = runtime_site(make_spec(), root="/b", address=IPv4Interface("10.2.0.3/24"), mode="proxy")
    assert any("add 'ipxe' to loaders.chains" in w for w in plain.warnings), plain.warnings
    server = runtime_site(spec, root="/b", address=IPv4Interface("10.2.0.3/24"))
    assert not any("proxy" in w for w in server.warnings)


def test_boot_tracking_asks_ganesha_and_rpcbind_for_the_mount_lines() -> None:
    spec = make_spec()
    site = runtime_site(spec, root="/srv/bootpack", address=IPv4Interface("192.168.50.9/24"),
                        host_roots="/var/lib/bootpack/hosts").site
    rt = render_runtime(spec, site, PATHS, "eth1", status_port=8099)
    assert "COMPONENTS { CLIENTID = DEBUG; }" in rt.files["ganesha.conf"]
    assert next(s for s in rt.services if s.name == "rpcbind").argv[-1] == "-d"
