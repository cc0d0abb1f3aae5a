"""End to end: every machine's boot in `bootpack status`, /metrics and the dashboard.

One appliance (status token set, stall threshold 15 s) on the test's own Docker network, two
marker VMs through a tap on its bridge:

1. the known host `known` boots its entry while headless chromium shows the dashboard: the row
   reaches "up" on screen (the netmarker initrd reports up with busybox wget, as the report unit
   of a built image does);
2. the known host `nfshost` boots its `nfs` entry: the netmarker initrd mounts the NFS root
   (NFSv4.1, Ganesha's CREATE_SESSION is its `root` stage) and the root's /init reports up;
3. the kernel is removed from the appliance's bundle (pxelinux fetches it from nginx), and a VM
   with an unknown MAC boots: it gets DHCP, pxelinux and the default menu, fails to load the
   kernel (HTTP 404) and stalls at `config`.

`bootpack status --watch` runs against it until SIGINT. Then dhcpd is killed once: the timeline
survives the daemon's restart. (Proxy mode's timeline: tests/appliance/test_several.py, on the
proxy fleet's VM boot.)
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container
from prometheus_client.parser import text_string_to_metric_families

from tests.support.appliance_env import (
    KNOWN_MAC,
    NFS_MAC,
    SLOT,
    BootNet,
    start_appliance,
    tap_device,
    vm_network,
    wait_healthy,
)
from tests.support.browser import browser_available, headless_chromium
from tests.support.marker import MARKER
from tests.support.netmarker import NFS_ROOT_MARK, UP_MARK
from tests.support.vm import boot_vm

pytestmark = [pytest.mark.docker, pytest.mark.boot]
TAP = f"bptap-s{SLOT}"
TOKEN = "test-token-13"
UNKNOWN_MAC = "52:54:00:a7:0f:0f"
SCREENSHOT = os.environ.get("BOOTPACK_SCREENSHOT")  # also save the dashboard here (docs/)


@pytest.fixture(scope="module")
def net() -> Iterator[BootNet]:
    with vm_network(IPv4Network(f"10.76.{SLOT}.0/25"), "s") as net:
        yield net


@pytest.fixture(scope="module")
def tap(net: BootNet) -> Iterator[str]:
    with tap_device(net, TAP) as tap:
        yield tap


@pytest.fixture(scope="module")
def appliance(net: BootNet, tap: str) -> Iterator[tuple[str, Container]]:
    client = docker.from_env()
    address = net.ip(10)
    container = start_appliance(client, net, address,
                                ["--interface", "eth0", "--address", f"{address}/25"],
                                f"bp-appl-{SLOT}-status",
                                env={"BOOTPACK_STATUS_TOKEN": TOKEN, "BOOTPACK_STALL_SECONDS": "15"})
    try:
        wait_healthy(container)
        yield address, container
    finally:
        with contextlib.suppress(docker.errors.APIError):
            logs = container.logs().decode()
            print(logs[-6000:])
            if os.environ.get("BOOTPACK_APPLIANCE_LOG"):  # keep the whole log (recorded lines)
                Path(os.environ["BOOTPACK_APPLIANCE_LOG"]).write_text(logs)
        container.remove(force=True, v=True)


def _get(url: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _status_json(address: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "bootpack", "status", "--server",
                             f"http://{address}", "--json", "--token", TOKEN],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _metrics(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = _get(f"http://{address}/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _host(report: dict[str, Any], mac: str) -> dict[str, Any]:
    hosts = {h["mac"]: h for h in report["hosts"]}
    assert mac in hosts, f"{mac} not in {sorted(hosts)}"
    return hosts[mac]


def _wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def test_status_site_is_read_only_and_needs_the_token(appliance: tuple[str, Container]) -> None:
    address, _ = appliance
    assert _get(f"http://{address}/bootpack/api/status", token=None)[0] == 401
    assert _get(f"http://{address}/metrics", token="wrong")[0] == 401
    assert _get(f"http://{address}/bootpack/?token={TOKEN}", token=None)[0] == 200
    request = urllib.request.Request(f"http://{address}/bootpack/api/status", method="DELETE",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405
    # an `up` report from an address no DHCP exchange named is refused
    assert _get(f"http://{address}/bootpack/up/marker", token=None)[0] == 404


@pytest.mark.skipif(not browser_available(), reason="chromium + chromium-driver needed")
def test_a_known_host_boots_to_up_on_the_dashboard(tmp_path: Path, tap: str,
                                                   appliance: tuple[str, Container]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    address, _ = appliance
    result: dict[str, Any] = {}
    vm = threading.Thread(target=lambda: result.update(boot=boot_vm(
        tmp_path / "serial.log", KNOWN_MAC, f"{MARKER} done", tap=tap, timeout=240)))
    with headless_chromium() as driver:
        driver.get(f"http://{address}/bootpack/?token={TOKEN}&mac={KNOWN_MAC}")  # type: ignore[attr-defined]
        WebDriverWait(driver, 20).until(  # type: ignore[arg-type]
            lambda d: "appliance-test 1.0.0" in d.find_element(By.ID, "bundle").text)
        start = time.monotonic()
        vm.start()
        seen: set[str] = set()
        row_text = ""

        def row_up(d: Any) -> bool:
            # read the row in one script: the page redraws the table every 2 s
            nonlocal row_text
            found = d.execute_script(
                "const r = document.querySelector(arguments[0]); return r ? "
                "[r.dataset.state, r.querySelector('.stage').textContent, r.innerText] : null",
                f'tr[data-mac="{KNOWN_MAC}"]')
            if found:
                seen.add(found[1])
                row_text = found[2]
            return bool(found) and found[0] == "up"

        WebDriverWait(driver, 240, poll_frequency=0.5).until(row_up)  # type: ignore[arg-type]
        print(f"\ndashboard showed {KNOWN_MAC} up after {time.monotonic() - start:.1f} s; "
              f"stages seen on screen: {sorted(seen)}")
        assert "known" in row_text and "marker" in row_text
        time.sleep(2.5)  # one more poll: the timeline view below the table
        assert "up" in driver.find_element(By.ID, "timeline").text  # type: ignore[attr-defined]
        driver.save_screenshot(str(tmp_path / "dashboard.png"))  # type: ignore[attr-defined]
        if SCREENSHOT:
            shutil.copyfile(tmp_path / "dashboard.png", SCREENSHOT)
    vm.join()
    boot = result["boot"]
    assert boot.found and UP_MARK in boot.log, boot.log[-3000:]
    assert len(seen) >= 2  # it moved through stages live, not only at the end

    host = _host(_status_json(address), KNOWN_MAC)
    assert (host["name"], host["known"], host["entry"], host["state"], host["stage"]) == \
        ("known", True, "marker", "up", "up")
    current = host["boots"][-1]
    assert current["config"] == "per-host"
    stages = current["stages"]
    expected = ["dhcp-discover", "dhcp-offer", "dhcp-ack", "loader", "config", "kernel", "initrd", "up"]
    assert list(stages) == expected, stages
    assert [stages[s] for s in expected] == sorted(stages[s] for s in expected)
    kernel = next(e for e in current["events"] if e["stage"] == "kernel")
    assert kernel["bytes"] > 1_000_000 and kernel["seconds"] is not None
    assert current["reported_uptime"] > 0 and host["last_boot_seconds"] == current["duration"]
    assert host["ip"] and host["ip"].startswith(f"10.76.{SLOT}.")


def test_an_nfs_root_mount_is_the_root_stage(tmp_path: Path, tap: str,
                                             appliance: tuple[str, Container]) -> None:
    address, container = appliance
    boot = boot_vm(tmp_path / "serial.log", NFS_MAC, f"{MARKER} done", tap=tap, timeout=240)
    assert boot.found and NFS_ROOT_MARK in boot.log and UP_MARK in boot.log, boot.log[-3000:]
    print(f"\nnfs root boot to up: {boot.seconds:.1f} s")
    host = _host(_status_json(address), NFS_MAC)
    assert (host["name"], host["entry"], host["state"]) == ("nfshost", "shared", "up")
    current = host["boots"][-1]
    expected = ["dhcp-discover", "dhcp-offer", "dhcp-ack", "loader", "config", "kernel", "initrd",
                "root", "up"]
    assert list(current["stages"]) == expected, current["stages"]
    [root] = [e for e in current["events"] if e["stage"] == "root"]
    assert root["detail"] == f"nfs v4.1+ mount by {host['ip']} (CREATE_SESSION)"
    # the debug output asked of Ganesha for this stays out of the container log
    logs = container.logs().decode()
    assert "CREATE_SESSION client addr=" in logs and ":CLIENT ID :DEBUG :Created client" not in logs


def test_an_unknown_mac_without_kernel_stalls(tmp_path: Path, tap: str,
                                              appliance: tuple[str, Container]) -> None:
    address, container = appliance
    # nginx serves the baked bundle (/srv/bootpack), tftpd its own linked or copied tree: both
    code, out = container.exec_run(["rm", "/srv/bootpack/tftpboot/images/marker/vmlinuz",
                                    "/run/bootpack/tftpboot/images/marker/vmlinuz"])
    assert code == 0, out
    holder: dict[str, Any] = {}
    vm = threading.Thread(target=lambda: holder.update(boot=boot_vm(
        tmp_path / "serial.log", UNKNOWN_MAC, "never printed", tap=tap, timeout=60)))
    vm.start()
    try:
        # At config: under load the iPXE ROM can take longer than the 15 s threshold between
        # its DHCP ACK and its first TFTP read, a stall at dhcp-ack that the next read ends.
        host = _wait_for("the unknown MAC to stall at config", lambda: next(
            (h for h in _status_json(address)["hosts"] if h["mac"] == UNKNOWN_MAC
             and h["state"] == "stalled" and h["stage"] == "config"), None), timeout=90)
    finally:
        vm.join()
    assert (host["name"], host["known"], host["entry"], host["stage"]) == (None, False, "marker", "config")
    assert host["boots"][-1]["config"] == "default"
    # pxelinux (lpxelinux.0) asks nginx for the kernel: a 404
    assert host["error"] == "kernel images/marker/vmlinuz: HTTP 404 (HTTP)"

    # the table, as `bootpack status` shows it inside the appliance
    code, out = container.exec_run(["bootpack", "status"])
    assert code == 0, out
    table = out.decode()
    print("\n" + table)
    assert "(unknown)" in table and "stalled at config" in table and "known" in table


def test_metrics_count_the_boots(appliance: tuple[str, Container]) -> None:
    address, _ = appliance
    m = _metrics(address)

    def value(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("bootpack_boots_started_total", entry="marker") >= 2
    assert value("bootpack_boots_completed_total", entry="marker") == 1
    assert value("bootpack_boots_stalled_total", entry="marker") >= 1
    assert value("bootpack_boot_duration_seconds_count", entry="marker") == 1
    assert value("bootpack_boot_duration_seconds_sum", entry="marker") > 5
    assert value("bootpack_dhcp_messages_total", type="discover", mode="server") >= 2
    assert value("bootpack_dhcp_messages_total", type="ack", mode="server") >= 2
    # QEMU's iPXE ROM: ipxe/boot.ipxe over HTTP, the loader stage in place of pxelinux.0
    assert value("bootpack_files_served_total", protocol="http", kind="loader") >= 2
    assert value("bootpack_files_served_total", protocol="http", kind="config") >= 2
    # kernels and initrds come over HTTP (lpxelinux.0), the loader and configs over TFTP
    assert value("bootpack_files_served_bytes_total", protocol="http", kind="kernel") > 1_000_000
    assert value("bootpack_file_errors_total", protocol="http", kind="kernel") >= 1
    assert value("bootpack_files_served_total", protocol="nfs", kind="root") >= 1
    assert value("bootpack_boots_completed_total", entry="shared") == 1
    assert value("bootpack_hosts", state="up") == 2 and value("bootpack_hosts", state="stalled") == 1
    assert value("bootpack_health_check_ok", check="tftp") == 1
    assert value("bootpack_daemon_up", service="dhcpd") == 1
    assert not [k for k in m if "mac" in dict(k[1])]  # bounded labels: no MACs


def test_status_watch_redraws_until_interrupted(appliance: tuple[str, Container]) -> None:
    address, _ = appliance
    watch = subprocess.Popen([sys.executable, "-m", "bootpack", "status", "--server", f"http://{address}",
                              "--token", TOKEN, "--watch", "--interval", "0.5"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert watch.stdout is not None
        out = b""
        deadline = time.monotonic() + 60
        while out.count(b"\x1b[H\x1b[2J") < 3 and time.monotonic() < deadline:
            if select.select([watch.stdout], [], [], 1)[0]:
                chunk = os.read(watch.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        frames = out.decode().split("\x1b[H\x1b[2J")[1:]
        assert len(frames) >= 3, out.decode()[-2000:]
        assert all("appliance-test 1.0.0" in f and KNOWN_MAC in f for f in frames[:2])
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode in (0, 130), err.decode()
    assert b"Traceback" not in err, err.decode()
    print(f"\n`bootpack status --watch`: {len(frames)} redraws, then SIGINT: exit {watch.returncode}")


def test_the_timeline_survives_a_daemon_restart(appliance: tuple[str, Container]) -> None:
    address, container = appliance
    before = _status_json(address)
    state = json.loads(container.exec_run(["cat", "/run/bootpack/state.json"]).output)
    pid = state["daemons"]["dhcpd"]["pid"]
    assert container.exec_run(["sh", "-c", f"kill {pid}"]).exit_code == 0
    _wait_for("dhcpd to be restarted", lambda: _metrics(address).get(
        ("bootpack_daemon_restarts_total", (("service", "dhcpd"),)), 0) >= 1, timeout=30)
    after = _status_json(address)
    assert {h["mac"] for h in after["hosts"]} == {h["mac"] for h in before["hosts"]}
    assert _host(after, KNOWN_MAC)["state"] == "up"
