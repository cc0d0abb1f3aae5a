"""The livenet example (Debian 12 built from a Dockerfile) baked into the appliance and served on
an isolated Docker bridge with a tap device for QEMU: shared by tests/appliance/test_real_images.py
and benchmarks/nfs_boots.py.

The spec's network (10.0.2.0/24, server 10.0.2.2) is not the one served: the appliance runs at
.10 of the caller's 10.77.S.0/24 on its own bridge. Network safety: the bridge, the tap and the
container are the caller's own and are removed on exit; nothing uses host networking.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import docker
import docker.errors
import tomli_w
from docker.models.containers import Container

from tests.support.appliance_env import (
    CAPS,
    BootNet,
    docker_client_or_skip,
    isolated_network,
    wait_healthy,
)
from tests.support.vm import Boot, Firmware, boot_vm

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "livenet"
MARKER = "BOOTPACK-BOOTED"  # printed by the example's bootpack-marker.service
NFS_ROOT = "/srv/bootpack/roots/debian"
# What a stalled NFS client prints: hung tasks (e.g. in nfs_idmap_get_key), a server that stops
# answering, an id-mapping upcall that gives up, or a mount that fails.
STALL_SIGNS = ("blocked for more than", "nfs_idmap", "not responding", "hung_task",
               "mount.nfs:", "nfsidmap")


def livenet_spec(work: Path, hosts: dict[str, tuple[str, dict[str, Any]]]) -> Path:
    """The example with DHCP in server mode and one host per entry.

    hosts: entry name -> (MAC, entry settings over the example's entry of that root mode), e.g.
    {"nfs-v3": ("52:54:00:..", {"root": "nfs", "nfs_version": 3})}."""
    data = tomllib.loads((EXAMPLE / "spec.toml").read_text())
    data["images"]["debian"]["dockerfile"] = str(EXAMPLE / "Dockerfile")
    # as tests/images/test_build.py builds it (its read-only root check boots from a virtio
    # disk), so the session builds the image once for both
    data["images"]["debian"]["drivers"] = ["virtio_blk", "squashfs"]
    data["dhcp"] = {"mode": "server", "subnet": "10.0.2.0/24",
                    "range": ["10.0.2.100", "10.0.2.120"]}
    by_root = {e["root"]: e for e in data["entries"]}
    entries = []
    for name, (_mac, settings) in hosts.items():
        entry = dict(by_root[settings["root"]])
        entry.update(settings, name=name, label=f"{entry['label']} ({name})")
        entries.append(entry)
    data["entries"] = entries
    data["menu"]["default"] = entries[0]["name"]
    data["hosts"] = [{"name": f"vm-{name}", "mac": mac, "entry": name}
                     for name, (mac, _settings) in hosts.items()]
    spec = work / "spec.toml"
    spec.write_text(tomli_w.dumps(data))
    return spec


def bake(spec: Path, tag: str, timeout: float = 2400) -> float:
    """`bootpack image SPEC --tag TAG`: build the images and bundle, bake the appliance. Seconds."""
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bootpack", "image", str(spec), "--tag", tag],
                            capture_output=True, text=True, cwd=spec.parent, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"bootpack image failed:\n{result.stderr[-3000:]}")
    return time.monotonic() - start


def remove_image(tag: str) -> None:
    with contextlib.suppress(docker.errors.APIError):
        docker.from_env().images.remove(tag, force=True)


@dataclass
class Served:
    net: BootNet
    address: str
    tap: str
    container: Container
    healthy_seconds: float

    def boot(self, serial_log: Path, mac: str, timeout: float = 600,
             firmware: Firmware = "bios") -> Boot:
        return boot_vm(serial_log, mac, MARKER, tap=self.tap, timeout=timeout, memory_mb=2048,
                       firmware=firmware)


@contextlib.contextmanager
def served(tag: str, slot: int, name: str) -> Iterator[Served]:
    """Run appliance image `tag` at 10.77.SLOT.10/24 on a new bridge, with tap bptap-aSLOTr."""
    client = docker_client_or_skip()
    tap = f"bptap-a{slot}r"
    with isolated_network(client, IPv4Network(f"10.77.{slot}.0/24"), "r") as net:
        subprocess.run(["ip", "link", "del", tap], capture_output=True)
        subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
        address = net.ip(10)
        container = None
        try:
            subprocess.run(["ip", "link", "set", tap, "master", net.bridge, "up"], check=True)
            networking = client.api.create_networking_config(
                {net.network.name: client.api.create_endpoint_config(ipv4_address=address)})
            created = client.api.create_container(
                tag, command=["--interface", "eth0", "--address", f"{address}/24"],
                name=f"bp-appl-{slot}-{name}", host_config=client.api.create_host_config(cap_add=CAPS),
                networking_config=networking)
            client.api.start(created["Id"])
            container = client.containers.get(created["Id"])
            healthy = wait_healthy(container, timeout=180)
            yield Served(net, address, tap, container, healthy)
        finally:
            subprocess.run(["ip", "link", "del", tap], capture_output=True)
            if container is not None:
                print(container.logs().decode(errors="replace")[-3000:])
                container.remove(force=True, v=True)


def stall_signs(log: str) -> list[str]:
    """Lines of a serial log that show an NFS client stalling or failing to mount."""
    return [line for line in log.splitlines() if any(sign in line for sign in STALL_SIGNS)]
