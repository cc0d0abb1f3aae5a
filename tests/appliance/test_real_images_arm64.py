"""A real arm64 image end to end: Debian 12 for arm64 built from examples/arm64/Dockerfile with
`docker build --platform linux/arm64` (binfmt_misc + qemu-user on this x86-64 machine), bootpack's
live initrd staged inside that image for its own kernel (arm64 busybox-static, the kernel's
modules), the live squashfs baked into the appliance, and an
arm64 VM (AAVMF, TCG) that boots the live entry through the appliance's DHCP (option 93 = 11),
TFTP (arm64 shim and GRUB) and HTTP until systemd runs the example's marker unit.

Slow (marked `slow`): every RUN step and the netboot step run under emulation, and the VM under TCG. The
times are printed as MEASURE lines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import tomli_w

from tests.support.appliance_env import SLOT
from tests.support.livenet import REPO, Served, bake, remove_image, served
from tests.support.vm import arm64_available

pytestmark = [pytest.mark.docker, pytest.mark.boot, pytest.mark.slow]
MAC = "52:54:00:a7:03:01"
TAG = "bp-appl-arm64live:test"


def measure(name: str, value: float, unit: str) -> None:
    print(f"\nMEASURE {name}: {value:.1f} {unit}")


@pytest.fixture(scope="module")
def arm64_base_image() -> str:
    """arm64v8/debian:bookworm-slim exists locally: pulled where a registry answers (CI: a few
    seconds), else made with mmdebstrap for arm64 (every package script under qemu-user: ~150 s
    at load ~4 here, where no registry answers and the pull fails at once)."""
    from bootpack.images.baseimage import DEFAULT_TAGS, ensure_debian_image, image_exists

    tag = DEFAULT_TAGS["arm64"]
    client = docker.from_env()
    start = time.monotonic()
    how = "cached"
    if not image_exists(client, tag):
        try:
            client.images.pull(tag, platform="linux/arm64")
            how = "pulled"
        except docker.errors.DockerException as exc:
            print(f"\n{tag}: no pull ({str(exc)[:200]}); mmdebstrap for arm64")
            how = "mmdebstrap"
    image = ensure_debian_image(tag, architecture="arm64")
    measure(f"arm64 base image ({how})", time.monotonic() - start, "s")
    return image


@pytest.fixture(scope="module")
def arm64_appliance(session_cache_dir: Path, arm64_base_image: str,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not arm64_available():
        pytest.fail("qemu-system-arm and qemu-efi-aarch64 are needed (scripts/install --test)")
    work = tmp_path_factory.mktemp("arm64-live")
    spec = work / "spec.toml"
    spec.write_text(tomli_w.dumps({
        "schema": 1, "bundle": {"name": "arm64live", "version": "1.0.0"},
        "server": {"address": "10.0.2.2", "http_port": 8080},
        "dhcp": {"mode": "server", "subnet": "10.0.2.0/24", "range": ["10.0.2.100", "10.0.2.120"]},
        "menu": {"timeout": 1},
        "images": {"debian": {"dockerfile": str(REPO / "examples" / "arm64" / "Dockerfile"),
                              "architecture": "arm64"}},
        "entries": [{"name": "live", "image": "debian", "root": "live",
                     "cmdline": "console=ttyAMA0"}],
        "hosts": [{"name": "arm-live", "mac": MAC, "entry": "live"}],
    }))
    # Under qemu-user every arm64 program is emulated: 356 s at load ~2, 592 s at load ~8 (Docker
    # layers cached; a cold `docker build` adds ~150 s), but an attempt at load ~20 (with the
    # kernel's initramfs-tools run, now skipped) took over 40 minutes.
    seconds = bake(spec, TAG, timeout=7200)
    measure("arm64 image built (docker build + netboot step under qemu-user) and baked", seconds, "s")
    measure("arm64 appliance image size", docker.from_env().images.get(TAG).attrs["Size"] / 1e6,
            "MB")
    try:
        with served(TAG, SLOT, "arm64live") as serving:
            yield serving
    finally:
        remove_image(TAG)


def test_arm64_debian_image_boots_its_live_entry(arm64_appliance: Served, tmp_path: Path) -> None:
    boot = arm64_appliance.boot(tmp_path / "serial.log", MAC, timeout=1200, firmware="arm64")
    measure("arm64 live boot to the systemd marker", boot.seconds, "s")
    assert boot.found, boot.log[-4000:]
    version = next(line for line in boot.log.splitlines() if "Linux version" in line)
    assert "-arm64 " in version, version  # Debian's arm64 kernel, from the image itself
    assert "root=live:http://" in boot.log
