"""Benchmark: the appliance container's CPU and memory with and without boot tracking, while 20
clients "boot" against it.

    .venv/bin/python -m benchmarks.status_container [CLIENTS]

Runs the test appliance image (tests.support.appliance_env; BOOTPACK_TEST_IMAGE picks the tag)
twice on a Docker network of its own, once with BOOTPACK_STATUS=off. A client container on
that network plays CLIENTS clients at once, each: a PXE DHCPDISCOVER from its own MAC, TFTP
reads of pxelinux.0, ldlinux.c32, the default config, the kernel and the initrd, and the `up`
GET. (One container: the clients share its IP, so this measures the daemons' and the
tracker's work, not the timeline's correctness, which tests/appliance/test_status.py covers.)
Prints the container's CPU seconds (cgroup) during the load and the `bootpack serve` process's
RSS after it.
"""

from __future__ import annotations

import json
import sys
import time
from ipaddress import IPv4Network

import docker

from tests.support.appliance_env import (
    IMAGE_TAG,
    SLOT,
    appliance_image,
    isolated_network,
    start_appliance,
    wait_healthy,
)

CLIENT = r"""
import sys, threading, urllib.request
from bootpack.appliance.dhcp_probe import probe
from bootpack.appliance.health import tftp_read
server, clients = sys.argv[1], int(sys.argv[2])
lock = threading.Lock()
def client(n):
    mac = f"52:54:00:c0:00:{n:02x}"
    with lock:  # one raw DHCP socket at a time
        probe("eth0", timeout=2, mac=mac, pxe=True)
    for path in ("pxelinux.0", "ldlinux.c32", "pxelinux.cfg/default", "images/marker/vmlinuz",
                 "images/marker/initrd.img"):
        tftp_read(server, path, timeout=10)
    try:
        urllib.request.urlopen(f"http://{server}/bootpack/up/marker?uptime=10", timeout=10).read()
    except Exception:
        pass
threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
[t.start() for t in threads]
[t.join() for t in threads]
print("done")
"""


def cpu_seconds(container: docker.models.containers.Container) -> float:
    stats = container.stats(stream=False)
    return float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9


def serve_rss_mb(container: docker.models.containers.Container) -> float:
    state = json.loads(container.exec_run(["cat", "/run/bootpack/state.json"]).output)
    status = container.exec_run(["cat", f"/proc/{state['pid']}/status"]).output.decode()
    rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(rss.split()[1]) / 1024


def measure(client: docker.DockerClient, clients: int, tracking: bool) -> tuple[float, float, float, float]:
    with isolated_network(client, IPv4Network(f"10.76.{SLOT}.128/25"), "o") as net:
        address = net.ip(10)
        env = {} if tracking else {"BOOTPACK_STATUS": "off"}
        container = start_appliance(client, net, address, ["--interface", "eth0", "--address",
                                                           f"{address}/25"],
                                    f"bp-appl-{SLOT}-overhead", env=env)
        try:
            wait_healthy(container)
            idle_rss = serve_rss_mb(container)
            before = cpu_seconds(container)
            start = time.monotonic()
            client.containers.run(IMAGE_TAG, entrypoint=["/opt/bootpack/bin/python", "-c", CLIENT,
                                                         address, str(clients)],
                                  network=net.network.name, cap_add=["NET_RAW"], remove=True)
            seconds = time.monotonic() - start
            time.sleep(1)
            cpu = cpu_seconds(container) - before
            rss = serve_rss_mb(container)
        finally:
            container.remove(force=True, v=True)
    return seconds, cpu, idle_rss, rss


def main(argv: list[str]) -> None:
    clients = int(argv[0]) if argv else 20
    appliance_image()
    client = docker.from_env()
    for tracking in (False, True):
        seconds, cpu, idle, rss = measure(client, clients, tracking)
        print(f"tracking {'on ' if tracking else 'off'}: {clients} clients in {seconds:.1f} s; "
              f"appliance CPU {cpu:.2f} s; bootpack serve RSS {idle:.1f} MB idle, {rss:.1f} MB after")


if __name__ == "__main__":
    main(sys.argv[1:])
