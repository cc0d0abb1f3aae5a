"""End to end with real images: the livenet example (Debian 12 with systemd, built from a
Dockerfile by the image builder into bootpack's live initrd, a dracut NFS initrd, a live squashfs
and an NFS root tree) baked
into the appliance, and VMs that PXE-boot its `live` entry (BIOS and UEFI) and its `nfs` entry
over each NFS version the spec accepts (3 and 4) through the appliance's DHCP, TFTP, HTTP and NFS
until systemd runs the example's marker unit.

As in tests/appliance/test_boot.py, the spec's network (10.0.2.0/24, server 10.0.2.2) is not the
one served: the appliance runs at 10.77.S.10/24 on the test's own Docker bridge. Repeated NFS
boots (5+ per version, no stall) are benchmarks/nfs_boots.py, outside the suite.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import tomli_w

from tests.support.appliance_env import SLOT
from tests.support.livenet import (
    MARKER,
    NFS_ROOT,
    Served,
    bake,
    livenet_spec,
    remove_image,
    served,
    stall_signs,
)
from tests.support.vm import ovmf_available, qemu_available

pytestmark = [pytest.mark.docker, pytest.mark.boot]

HOSTS: dict[str, tuple[str, dict[str, Any]]] = {
    "live": ("52:54:00:a7:02:01", {"root": "live"}),
    "nfs-v3": ("52:54:00:a7:02:02", {"root": "nfs", "nfs_version": 3}),
    "nfs-v4": ("52:54:00:a7:02:03", {"root": "nfs", "nfs_version": 4}),
}
UEFI_LIVE_MAC = "52:54:00:a7:02:11"  # a UEFI machine that boots the live entry
TAG = "bp-appl-livenet:test"


def measure(name: str, value: float, unit: str) -> None:
    print(f"\nMEASURE {name}: {value:.1f} {unit}")


@pytest.fixture(scope="module")
def livenet_image(session_cache_dir: Path, debian_base_image: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example with DHCP in server mode and one host per entry, built and baked."""
    spec = livenet_spec(tmp_path_factory.mktemp("appliance-livenet"), HOSTS)
    data = tomllib.loads(spec.read_text())
    data["hosts"].append({"name": "vm-uefi-live", "mac": UEFI_LIVE_MAC, "entry": "live"})
    spec.write_text(tomli_w.dumps(data))
    measure("livenet bundle built and baked into the appliance", bake(spec, TAG), "s")
    size = docker.from_env().images.get(TAG).attrs["Size"]
    measure("livenet appliance image size", size / 1e6, "MB")
    yield TAG
    remove_image(TAG)


@pytest.fixture(scope="module")
def appliance(livenet_image: str) -> Iterator[Served]:
    if not qemu_available():
        pytest.fail("qemu-system-x86_64 and ipxe-qemu are needed (scripts/install --test)")
    with served(livenet_image, SLOT, "livenet") as serving:
        measure("livenet appliance: create + start to healthy", serving.healthy_seconds, "s")
        # Owners and modes of the NFS root survive baking: /var/mail is root:mail, setgid.
        mail = serving.container.exec_run(["stat", "-c", "%g %a", f"{NFS_ROOT}/var/mail"])
        assert mail.output.decode().split() == ["8", "2775"], mail.output
        yield serving


@pytest.mark.parametrize("entry", list(HOSTS))
def test_real_image_boots_through_the_appliance(appliance: Served, tmp_path: Path,
                                               entry: str) -> None:
    address = appliance.address
    boot = appliance.boot(tmp_path / "serial.log", HOSTS[entry][0])
    measure(f"appliance e2e boot to systemd marker, {entry}", boot.seconds, "s")
    assert boot.found, boot.log[-4000:]
    expected = {
        "live": f"root=live:http://{address}:8080/images/debian/squashfs.img",
        "nfs-v3": f"root=nfs:{address}:{NFS_ROOT}:vers=3,tcp ip=dhcp rd.neednet=1 ro ",
        "nfs-v4": f"root=nfs4:{address}:{NFS_ROOT}:vers=4,tcp ip=dhcp rd.neednet=1 ro "
                  "nfs.nfs4_disable_idmapping=1 ",
    }[entry]
    assert expected in boot.log
    time.sleep(2)  # the marker line's failed-unit count follows on the same line
    log = (tmp_path / "serial.log").read_text(errors="replace")
    assert f"{MARKER} failed=0" in log, log[-3000:]
    assert stall_signs(log) == [], stall_signs(log)


def test_real_image_live_entry_boots_on_uefi(appliance: Served, tmp_path: Path) -> None:
    """The same live entry on a UEFI machine (OVMF's own PXE, Secure Boot off): shim -> GRUB
    fetch the image's kernel and bootpack's live initrd, which fetches the squashfs over HTTP."""
    if not ovmf_available():
        pytest.fail("OVMF is needed (scripts/install --test)")
    boot = appliance.boot(tmp_path / "serial.log", UEFI_LIVE_MAC, firmware="uefi")
    measure("appliance e2e UEFI boot to systemd marker, live", boot.seconds, "s")
    assert boot.found, boot.log[-4000:]
    assert f"root=live:http://{appliance.address}:8080/images/debian/squashfs.img" in boot.log
    assert "BOOTIF=01-52-54-00-a7-02-11" in boot.log
    time.sleep(2)
    log = (tmp_path / "serial.log").read_text(errors="replace")
    assert f"{MARKER} failed=0" in log, log[-3000:]
