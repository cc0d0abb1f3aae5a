"""End to end with real images: the livenet example (Debian 12 with systemd, built from a
Dockerfile by the image builder into a dracut initrd, a live squashfs and an NFS root tree) baked
into the appliance, and VMs that PXE-boot its `live` and `nfs` entries through the appliance's
DHCP, TFTP, HTTP and NFS until systemd runs the example's marker unit.

As in tests/test_appliance_boot.py, the spec's network (10.0.2.0/24, server 10.0.2.2) is not the
one served: the appliance runs at 10.77.S.10/24 on the test's own Docker bridge.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import docker
import pytest
import tomli_w

from tests.support.appliance_env import (
    CAPS,
    SLOT,
    BootNet,
    docker_client_or_skip,
    isolated_network,
    wait_healthy,
)
from tests.support.vm import boot_vm, ovmf_available, qemu_available

pytestmark = [pytest.mark.docker, pytest.mark.boot]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "livenet"
MARKER = "BOOTPACK-BOOTED"  # printed by the example's bootpack-marker.service
MACS = {"live": "52:54:00:a7:02:01", "nfs": "52:54:00:a7:02:02"}
UEFI_LIVE_MAC = "52:54:00:a7:02:11"  # a UEFI machine that boots the live entry
TAG = "bp-appl-livenet:test"
TAP = f"bptap-a{SLOT}r"


def measure(name: str, value: float, unit: str) -> None:
    print(f"\nMEASURE {name}: {value:.1f} {unit}")


@pytest.fixture(scope="module")
def livenet_image(session_cache_dir: Path, debian_base_image: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example with DHCP in server mode and one host per root mode, built and baked."""
    work = tmp_path_factory.mktemp("appliance-livenet")
    data = tomllib.loads((EXAMPLE / "spec.toml").read_text())
    data["images"]["debian"]["dockerfile"] = str(EXAMPLE / "Dockerfile")
    data["dhcp"] = {"mode": "server", "subnet": "10.0.2.0/24", "range": ["10.0.2.100", "10.0.2.120"]}
    data["entries"] = [e for e in data["entries"] if e["root"] in MACS]
    data["menu"]["default"] = "live"
    data["hosts"] = [{"name": f"vm-{root}", "mac": mac, "entry": root} for root, mac in MACS.items()]
    data["hosts"].append({"name": "vm-uefi-live", "mac": UEFI_LIVE_MAC, "entry": "live"})
    spec = work / "spec.toml"
    spec.write_text(tomli_w.dumps(data))
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bootpack", "image", str(spec), "--tag", TAG],
                            capture_output=True, text=True, cwd=work, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    measure("livenet bundle built and baked into the appliance", time.monotonic() - start, "s")
    size = docker.from_env().images.get(TAG).attrs["Size"]
    measure("livenet appliance image size", size / 1e6, "MB")
    yield TAG
    with contextlib.suppress(docker.errors.APIError):
        docker.from_env().images.remove(TAG, force=True)


@pytest.fixture(scope="module")
def served(livenet_image: str) -> Iterator[tuple[BootNet, str]]:
    if not qemu_available():
        pytest.fail("qemu-system-x86_64 and ipxe-qemu are needed (scripts/install --test)")
    client = docker_client_or_skip()
    with isolated_network(client, IPv4Network(f"10.77.{SLOT}.0/24"), "r") as net:
        subprocess.run(["ip", "link", "del", TAP], capture_output=True)
        subprocess.run(["ip", "tuntap", "add", "dev", TAP, "mode", "tap"], check=True)
        address = net.ip(10)
        container = None
        try:
            subprocess.run(["ip", "link", "set", TAP, "master", net.bridge, "up"], check=True)
            networking = client.api.create_networking_config(
                {net.network.name: client.api.create_endpoint_config(ipv4_address=address)})
            start = time.monotonic()
            created = client.api.create_container(
                livenet_image, command=["--interface", "eth0", "--address", f"{address}/24"],
                name=f"bp-appl-{SLOT}-livenet", host_config=client.api.create_host_config(cap_add=CAPS),
                networking_config=networking)
            client.api.start(created["Id"])
            container = client.containers.get(created["Id"])
            wait_healthy(container, timeout=180)
            measure("livenet appliance: create + start to healthy", time.monotonic() - start, "s")
            # Owners and modes of the NFS root survive baking: /var/mail is root:mail, setgid.
            mail = container.exec_run(["stat", "-c", "%g %a", "/srv/bootpack/roots/debian/var/mail"])
            assert mail.output.decode().split() == ["8", "2775"], mail.output
            yield net, address
        finally:
            subprocess.run(["ip", "link", "del", TAP], capture_output=True)
            if container is not None:
                print(container.logs().decode(errors="replace")[-3000:])
                container.remove(force=True, v=True)


@pytest.mark.parametrize("root", ["live", "nfs"])
def test_real_image_boots_through_the_appliance(served: tuple[BootNet, str], tmp_path: Path,
                                               root: str) -> None:
    _net, address = served
    boot = boot_vm(tmp_path / "serial.log", MACS[root], MARKER, tap=TAP, timeout=600,
                   memory_mb=2048)
    measure(f"appliance e2e boot to systemd marker, {root}", boot.seconds, "s")
    assert boot.found, boot.log[-4000:]
    if root == "live":
        assert f"root=live:http://{address}:8080/images/debian/squashfs.img" in boot.log
    else:
        assert f"root=nfs4:{address}:/srv/bootpack/roots/debian" in boot.log
    time.sleep(2)  # the marker line's failed-unit count follows on the same line
    log = (tmp_path / "serial.log").read_text(errors="replace")
    assert f"{MARKER} failed=0" in log, log[-3000:]


def test_real_image_live_entry_boots_on_uefi(served: tuple[BootNet, str], tmp_path: Path) -> None:
    """The same live entry on a UEFI machine (OVMF's own PXE, Secure Boot off): shim -> GRUB
    fetch the image's kernel and dracut initrd over TFTP, dracut fetches the squashfs over HTTP."""
    if not ovmf_available():
        pytest.fail("OVMF is needed (scripts/install --test)")
    _net, address = served
    boot = boot_vm(tmp_path / "serial.log", UEFI_LIVE_MAC, MARKER, tap=TAP, timeout=600,
                   memory_mb=2048, firmware="uefi")
    measure("appliance e2e UEFI boot to systemd marker, live", boot.seconds, "s")
    assert boot.found, boot.log[-4000:]
    assert f"root=live:http://{address}:8080/images/debian/squashfs.img" in boot.log
    assert "BOOTIF=01-52-54-00-a7-02-11" in boot.log
    time.sleep(2)
    log = (tmp_path / "serial.log").read_text(errors="replace")
    assert f"{MARKER} failed=0" in log, log[-3000:]
