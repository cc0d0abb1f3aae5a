"""The boot timeline store, the metrics it drives, the status site's routing and the table."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bootpack.appliance.bootlog import DhcpEvent, FileEvent, NfsMount, TftpError, file_kind
from bootpack.appliance.metrics import Metrics
from bootpack.appliance.state import DaemonState
from bootpack.appliance.status import stage_times, status_url, table
from bootpack.appliance.statusweb import StatusSite
from bootpack.appliance.timeline import BundleInfo, Timeline
from bootpack.spec.load import parse_spec
from tests.support.browser import browser_available, headless_chromium

KNOWN = "52:54:00:a7:00:01"
STRANGER = "52:54:00:ee:ee:ee"
SIZES = {"pxelinux.0": 42_000, "ldlinux.c32": 120_000, "menu.c32": 30_000,
         f"pxelinux.cfg/01-{KNOWN.replace(':', '-')}": 300, "pxelinux.cfg/default": 500,
         "images/marker/vmlinuz": 8_000_000, "images/marker/initrd.img": 3_000_000}


def spec():  # type: ignore[no-untyped-def]
    return parse_spec({
        "schema": 1, "bundle": {"name": "t", "version": "1.0.0"},
        "server": {"address": "10.0.0.2"},
        "dhcp": {"mode": "server", "subnet": "10.0.0.0/24", "range": ["10.0.0.100", "10.0.0.150"]},
        "menu": {"default": "ram"},
        "images": {"marker": {"kernel": "vmlinuz", "initrd": "initrd.img", "squashfs": "sq.img"}},
        "entries": [{"name": "ram", "image": "marker"}, {"name": "live", "image": "marker", "root": "live"}],
        "hosts": [{"name": "node1", "mac": KNOWN, "entry": "live"}],
    })


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store(stall: float = 30.0) -> tuple[Timeline, Metrics, Clock]:
    s = spec()
    metrics = Metrics([e.name for e in s.entries])
    clock = Clock()
    timeline = Timeline(s, own_address="10.0.0.2", stall_seconds=stall, history=3,
                        file_size=SIZES.get, listener=metrics, clock=clock)
    return timeline, metrics, clock


def tftp(client: str, path: str) -> FileEvent:
    return FileEvent(protocol="tftp", client=client, path=path, kind=file_kind(path))


def pxe_boot(timeline: Timeline, clock: Clock, mac: str, ip: str, config: str) -> None:
    for message, addr in (("discover", None), ("offer", ip), ("request", ip), ("ack", ip)):
        timeline.feed(DhcpEvent(message=message, mac=mac, ip=addr))  # type: ignore[arg-type]
        clock.now += 0.5
    for path in ("pxelinux.0", "ldlinux.c32", "pxelinux.cfg/01-zz", config):
        timeline.feed(tftp(ip, path))
        clock.now += 0.3


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_a_known_host_runs_through_every_stage_to_up() -> None:
    timeline, metrics, clock = store()
    pxe_boot(timeline, clock, KNOWN, "10.0.0.100", f"pxelinux.cfg/01-{KNOWN.replace(':', '-')}")
    timeline.feed(tftp("10.0.0.100", "images/marker/vmlinuz"))
    clock.now += 4
    timeline.feed(tftp("10.0.0.100", "images/marker/initrd.img"))
    clock.now += 2
    # the booted system's own DHCP: the same boot, not a new one
    timeline.feed(DhcpEvent(message="discover", mac=KNOWN))
    timeline.feed(DhcpEvent(message="ack", mac=KNOWN, ip="10.0.0.100"))
    timeline.feed(FileEvent(protocol="http", client="10.0.0.100", path="images/marker/sq.img",
                            kind="root", status=200, bytes=5000, seconds=1.5))
    clock.now += 3
    assert timeline.report_up("10.0.0.100", entry="live", uptime=4.2)
    [host] = timeline.view()
    assert (host.name, host.entry, host.state, host.stage, host.ip) == \
        ("node1", "live", "up", "up", "10.0.0.100")
    [boot] = host.boots
    assert list(boot.stages) == ["dhcp-discover", "dhcp-offer", "dhcp-ack", "loader", "config",
                                 "kernel", "initrd", "root", "up"]
    assert boot.config == "per-host" and boot.reported_uptime == 4.2
    kernel = next(e for e in boot.events if e.stage == "kernel")
    assert kernel.bytes == 8_000_000 and kernel.seconds == 4.0  # until the next request
    assert host.last_boot_seconds == boot.duration == clock.now - boot.started
    assert "the booted system's own DHCP" in boot.events[-4].detail
    m = samples(metrics)
    assert m[("bootpack_boots_started_total", (("entry", "live"),))] == 1
    assert m[("bootpack_boots_completed_total", (("entry", "live"),))] == 1
    assert m[("bootpack_boot_duration_seconds_count", (("entry", "live"),))] == 1
    assert m[("bootpack_files_served_bytes_total", (("kind", "kernel"), ("protocol", "tftp")))] == 8e6
    assert m[("bootpack_dhcp_messages_total", (("mode", "server"), ("type", "discover")))] == 2
    assert ("bootpack_file_errors_total", (("kind", "config"), ("protocol", "tftp"))) not in m


def test_an_unknown_mac_with_a_missing_kernel_stalls_at_config() -> None:
    timeline, metrics, clock = store(stall=30)
    pxe_boot(timeline, clock, STRANGER, "10.0.0.101", "pxelinux.cfg/default")
    timeline.feed(tftp("10.0.0.101", "images/marker/missing-vmlinuz"))  # "other": ignored
    timeline.feed(tftp("10.0.0.101", "images/other/vmlinuz"))
    timeline.feed(TftpError(client="10.0.0.101", code=1, text="File not found"))
    [host] = timeline.view()
    assert (host.name, host.known, host.entry, host.state, host.stage) == \
        (None, False, "ram", "booting", "config")
    assert host.error == "kernel images/other/vmlinuz: not found (TFTP)"
    clock.now += 31
    [host] = timeline.view()
    assert host.state == "stalled" and host.boots[-1].config == "default"
    m = samples(metrics)
    assert m[("bootpack_boots_stalled_total", (("entry", "ram"),))] == 1
    assert m[("bootpack_file_errors_total", (("kind", "kernel"), ("protocol", "tftp")))] == 1
    # it tries again: a new boot; the history keeps the last 3
    for _ in range(4):
        clock.now += 31
        pxe_boot(timeline, clock, STRANGER, "10.0.0.101", "pxelinux.cfg/default")
    [host] = timeline.view()
    assert len(host.boots) == 3 and host.state == "booting"


def test_own_probes_unknown_clients_and_made_up_reports_are_ignored() -> None:
    timeline, metrics, _ = store()
    timeline.feed(tftp("10.0.0.2", "pxelinux.0"))  # bootpack health, from the appliance itself
    timeline.feed(tftp("10.0.0.77", "pxelinux.0"))  # an IP no DHCP exchange named
    assert timeline.view() == []
    assert not timeline.report_up("10.0.0.99")
    assert samples(metrics)[("bootpack_files_served_total", (("kind", "loader"), ("protocol", "tftp")))] == 1


def test_proxy_mode_events_advance_the_dhcp_stages() -> None:
    timeline, _, _ = store()
    timeline.feed(DhcpEvent(message="pxe", mac=STRANGER, mode="proxy"))
    timeline.feed(DhcpEvent(message="pxe", mac=STRANGER, ip="192.168.1.50", mode="proxy",
                            bootfile="pxelinux.0"))
    timeline.feed(tftp("192.168.1.50", "pxelinux.0"))
    [host] = timeline.view()
    assert list(host.boots[-1].stages) == ["dhcp-discover", "dhcp-offer", "dhcp-ack", "loader"]


def site() -> tuple[StatusSite, Timeline, Clock]:
    timeline, metrics, clock = store()
    metrics.watch(lambda: {"dhcpd": DaemonState(state="running", pid=5, restarts=2, last_exit=0)},
                  None, timeline.view)
    return StatusSite(timeline, metrics, BundleInfo(name="t", version="1.0.0", digest="sha256:ab"),
                      address="10.0.0.2", mode="server", token="s3cret"), timeline, clock


def test_status_site_routes_tokens_and_reports() -> None:
    web, timeline, clock = site()
    assert web.handle("GET", "/bootpack/api/status", {}, "127.0.0.1")[0] == 401
    assert web.handle("GET", "/metrics?token=nope", {}, "127.0.0.1")[0] == 401
    status, kind, body = web.handle("GET", "/bootpack/", {"authorization": "Bearer s3cret"}, "127.0.0.1")
    assert status == 200 and kind.startswith("text/html") and b"api/status" in body
    assert web.handle("POST", "/bootpack/api/status", {}, "127.0.0.1")[0] == 405
    assert web.handle("GET", "/etc/passwd", {}, "127.0.0.1")[0] == 404
    pxe_boot(timeline, clock, KNOWN, "10.0.0.100", "pxelinux.cfg/default")
    # the report's address is nginx's X-Real-IP, trusted only from loopback
    assert web.handle("GET", "/bootpack/up/live?uptime=3.5", {"x-real-ip": "10.0.0.100"},
                      "10.9.9.9")[0] == 404
    assert web.handle("POST", "/bootpack/up/live?uptime=3.5", {"x-real-ip": "10.0.0.100"},
                      "127.0.0.1")[0] == 200
    status, _, body = web.handle("GET", "/bootpack/api/status?token=s3cret", {}, "127.0.0.1")
    report = json.loads(body)
    assert report["bundle"]["digest"] == "sha256:ab" and report["hosts"][0]["state"] == "up"
    status, _, body = web.handle("GET", "/metrics", {"authorization": "Bearer s3cret"}, "127.0.0.1")
    text = body.decode()
    assert 'bootpack_daemon_restarts_total{service="dhcpd"} 2.0' in text
    assert 'bootpack_hosts{state="up"} 1.0' in text


def test_status_table_and_urls() -> None:
    web, timeline, clock = site()
    pxe_boot(timeline, clock, KNOWN, "10.0.0.100", f"pxelinux.cfg/01-{KNOWN.replace(':', '-')}")
    pxe_boot(timeline, clock, STRANGER, "10.0.0.101", "pxelinux.cfg/default")
    clock.now += 40
    timeline.report_up("10.0.0.100")
    report = web.report()
    text = table(report)
    lines = text.splitlines()
    assert lines[1].split()[:4] == ["HOST", "MAC", "IP", "ENTRY"]
    assert lines[2].startswith("node1") and "up" in lines[2]
    assert lines[3].startswith("(unknown)") and "stalled at config" in lines[3]
    known = next(h for h in report.hosts if h.mac == KNOWN)
    assert stage_times(known, report.now).startswith("disc 0.5 offer 1.0 ack 0.5 nbp 0.9 cfg ")
    assert status_url("10.0.0.2") == "http://10.0.0.2/bootpack/api/status"
    assert status_url("http://10.0.0.2:8080/") == "http://10.0.0.2:8080/bootpack/api/status"
    assert status_url("http://h/bootpack") == "http://h/bootpack/api/status"


def test_dhcp_after_the_kernel_is_the_same_boot_unless_the_loader_comes_again() -> None:
    timeline, metrics, clock = store(stall=5)
    pxe_boot(timeline, clock, KNOWN, "10.0.0.100", f"pxelinux.cfg/01-{KNOWN.replace(':', '-')}")
    timeline.feed(tftp("10.0.0.100", "images/marker/vmlinuz"))
    clock.now += 20  # a slow kernel: stalled at `kernel` meanwhile
    assert timeline.view()[0].state == "stalled"
    timeline.feed(DhcpEvent(message="discover", mac=KNOWN))  # the initrd's own DHCP
    timeline.feed(DhcpEvent(message="ack", mac=KNOWN, ip="10.0.0.100"))
    assert len(timeline.view()[0].boots) == 1
    clock.now += 1
    timeline.feed(DhcpEvent(message="discover", mac=KNOWN))  # ... or a reboot: the loader tells
    discover_at = clock.now
    clock.now += 2
    timeline.feed(DhcpEvent(message="ack", mac=KNOWN, ip="10.0.0.100"))
    timeline.feed(tftp("10.0.0.100", "pxelinux.0"))
    [host] = timeline.view()
    assert len(host.boots) == 2 and host.state == "booting" and host.stage == "loader"
    assert host.boots[-1].started == discover_at
    assert list(host.boots[-1].stages) == ["dhcp-discover", "dhcp-ack", "loader"]
    assert samples(metrics)[("bootpack_boots_started_total", (("entry", "live"),))] == 2


def test_dashboard_renders_the_hosts_and_a_timeline(tmp_path: Path) -> None:
    if not browser_available():
        pytest.skip("chromium + chromium-driver needed")
    web, timeline, clock = site()
    clock.now = time.time()
    pxe_boot(timeline, clock, KNOWN, "10.0.0.100", f"pxelinux.cfg/01-{KNOWN.replace(':', '-')}")
    timeline.feed(tftp("10.0.0.100", "images/marker/vmlinuz"))
    clock.now += 3
    timeline.report_up("10.0.0.100", uptime=9.5)
    pxe_boot(timeline, clock, STRANGER, "10.0.0.101", "pxelinux.cfg/default")
    port = web.start(0)
    try:
        with headless_chromium() as driver:
            driver.get(f"http://127.0.0.1:{port}/bootpack/?token=s3cret&mac={KNOWN}")  # type: ignore[attr-defined]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                states = driver.execute_script(  # type: ignore[attr-defined]
                    "return [...document.querySelectorAll('tr.host')].map(r => r.dataset.state)")
                if states:
                    break
                time.sleep(0.2)
            assert states == ["up", "booting"]
            assert driver.find_element("id", "error").text == ""  # type: ignore[attr-defined]
            text = driver.find_element("id", "timeline").text  # type: ignore[attr-defined]
            assert "tftp images/marker/vmlinuz" in text and "8000000" in text
            assert "(unknown MAC)" in driver.find_element("id", "hosts").text  # type: ignore[attr-defined]
    finally:
        web.close()


def test_status_command_reads_the_api(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from bootpack.cli import main

    web, timeline, clock = site()
    pxe_boot(timeline, clock, STRANGER, "10.0.0.101", "pxelinux.cfg/default")
    port = web.start(0)
    try:
        assert main(["status", "--server", f"http://127.0.0.1:{port}", "--token", "s3cret"]) == 0
        out = capsys.readouterr().out
        assert "(unknown)" in out and STRANGER in out and "cfg" in out
        assert main(["status", "--server", f"127.0.0.1:{port}", "--token", "s3cret", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["hosts"][0]["mac"] == STRANGER
        assert main(["status", "--server", f"http://127.0.0.1:{port}"]) == 2  # no token
        assert "BOOTPACK_STATUS_TOKEN" in capsys.readouterr().err
        assert main(["status", "--runtime-dir", str(tmp_path)]) == 2  # no appliance here
    finally:
        web.close()


def test_proxy_mode_learns_the_ip_from_the_per_host_config_request() -> None:
    # Another DHCP server gave 192.168.1.77; dnsmasq only answered the PXE part (no IP logged).
    timeline, _, clock = store()
    timeline.feed(DhcpEvent(message="pxe", mac=STRANGER, mode="proxy"))
    clock.now += 5
    timeline.feed(tftp("192.168.1.77", "pxelinux.0"))
    clock.now += 1
    timeline.feed(tftp("192.168.1.77", "ldlinux.c32"))
    timeline.feed(tftp("192.168.1.77", f"pxelinux.cfg/01-{STRANGER.replace(':', '-')}"))  # missing
    timeline.feed(tftp("192.168.1.77", "pxelinux.cfg/default"))
    [host] = timeline.view()
    assert host.mac == STRANGER and host.stage == "config" and host.boots[-1].config == "default"
    boot = host.boots[-1]
    assert list(boot.stages) == ["dhcp-discover", "dhcp-offer", "loader", "config"]
    assert boot.stages["loader"] == 5.0
    assert boot.events[2].seconds == 1.0  # pxelinux.0 took until ldlinux.c32 was asked for


def test_an_nfs_mount_is_the_root_stage_once_and_never_starts_a_boot() -> None:
    timeline, metrics, clock = store()
    pxe_boot(timeline, clock, KNOWN, "10.0.0.100", f"pxelinux.cfg/01-{KNOWN.replace(':', '-')}")
    for path in ("images/marker/vmlinuz", "images/marker/initrd.img"):
        timeline.feed(tftp("10.0.0.100", path))
        clock.now += 2
    timeline.feed(NfsMount(client="10.0.0.2", version="4.0", how="SETCLIENTID_CONFIRM"))  # own
    timeline.feed(NfsMount(client="10.0.0.77", version="3", how="MOUNT lookup"))  # no MAC known
    timeline.feed(NfsMount(client="10.0.0.100", version="3", how="MOUNT v3/tcp lookup (PMAP_GETPORT)"))
    clock.now += 1
    timeline.feed(NfsMount(client="10.0.0.100", version="3", how="again"))
    [host] = timeline.view()
    assert host.stage == "root" and [e.detail for e in host.boots[-1].events if e.stage == "root"] == \
        ["nfs v3 mount by 10.0.0.100 (MOUNT v3/tcp lookup (PMAP_GETPORT))"]
    assert timeline.report_up("10.0.0.100")
    timeline.feed(NfsMount(client="10.0.0.100", version="4.1+", how="CREATE_SESSION"))  # reconnect
    [host] = timeline.view()
    assert host.state == "up" and len(host.boots) == 1
    assert samples(metrics)[("bootpack_files_served_total", (("kind", "root"), ("protocol", "nfs")))] == 4


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nobody listens there once the socket is closed


def test_status_watch_of_an_unreachable_appliance_is_an_error_not_a_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    from bootpack.cli import main

    assert main(["status", "--watch", "--server", f"http://127.0.0.1:{_closed_port()}"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("bootpack: error: http://127.0.0.1:")
    assert "cannot reach the appliance" in err and "Traceback" not in err


def _read_until(stream: int, wanted: bytes, timeout: float = 30) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while wanted not in out and time.monotonic() < deadline:
        if select.select([stream], [], [], 0.5)[0]:
            chunk = os.read(stream, 65536)
            if not chunk:
                break
            out += chunk
    return out


def test_status_watch_keeps_polling_an_appliance_that_stops_answering() -> None:
    web, timeline, clock = site()
    pxe_boot(timeline, clock, STRANGER, "10.0.0.101", "pxelinux.cfg/default")
    port = web.start(0)
    watch = subprocess.Popen([sys.executable, "-m", "bootpack", "status", "--watch", "--interval",
                              "0.2", "--server", f"http://127.0.0.1:{port}", "--token", "s3cret"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert watch.stdout is not None
        assert STRANGER.encode() in _read_until(watch.stdout.fileno(), STRANGER.encode())
        web.close()  # the appliance restarts: the watch shows it and goes on polling
        assert b"retrying" in _read_until(watch.stdout.fileno(), b"retrying")
        assert watch.poll() is None
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0 and b"Traceback" not in err, err.decode()


def test_an_unknown_arm64_client_shows_the_arm64_menus_default() -> None:
    """menu.default is x86-64's: an unknown arm64 machine boots the first arm64 entry (the arm64
    menu's default, Spec.architecture_default), and status says so from its first loader on,
    before any kernel tells; an x86-64 client keeps menu.default, a known arm64 host without an
    entry gets its host file's (Spec.host_entry)."""
    data = {
        "schema": 1, "bundle": {"name": "t", "version": "1.0.0"},
        "server": {"address": "10.0.0.2"},
        "dhcp": {"mode": "server", "subnet": "10.0.0.0/24", "range": ["10.0.0.100", "10.0.0.150"]},
        "menu": {"default": "ram"},
        "images": {"marker": {"kernel": "vmlinuz", "initrd": "initrd.img"},
                   "karm": {"kernel": "Image", "initrd": "initrd.img", "architecture": "arm64"}},
        "entries": [{"name": "ram", "image": "marker"}, {"name": "arm-a", "image": "karm"},
                    {"name": "arm-b", "image": "karm", "cmdline": "b"}],
        "hosts": [{"name": "armnode", "mac": KNOWN, "architecture": "arm64"}],
    }
    s = parse_spec(data)
    arm_default = s.architecture_default("arm64")
    assert arm_default is not None and arm_default.name == "arm-a" != s.menu.default
    clock = Clock()
    timeline = Timeline(s, own_address="10.0.0.2", file_size=lambda path: 100, clock=clock)
    uefi_arm64 = ("bootaa64.efi", "grubaa64.efi", "grub/grub.cfg",
                  f"grub/hosts/{STRANGER}.cfg", "grub/arm64-efi/menu.cfg")
    for mac, ip, files in ((STRANGER, "10.0.0.101", uefi_arm64),
                           ("52:54:00:ee:ee:01", "10.0.0.102", ("bootx64.efi", "grubx64.efi",
                                                                "grub/grub.cfg")),
                           (KNOWN, "10.0.0.103", uefi_arm64[:3])):
        timeline.feed(DhcpEvent(message="discover", mac=mac))
        timeline.feed(DhcpEvent(message="ack", mac=mac, ip=ip))
        for path in files:
            timeline.feed(tftp(ip, path))
            clock.now += 0.3
    entries = {h.mac: (h.entry, h.stage) for h in timeline.view()}
    assert entries == {STRANGER: ("arm-a", "config"), "52:54:00:ee:ee:01": ("ram", "config"),
                       KNOWN: (s.host_entry(s.hosts[0]).name, "config")}
    assert entries[KNOWN][0] == "arm-a"
    assert {h.mac: h.boots[-1].architecture for h in timeline.view()} == \
        {STRANGER: "arm64", "52:54:00:ee:ee:01": "x86_64", KNOWN: "arm64"}
