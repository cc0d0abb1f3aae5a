"""Test helpers for the boot appliance: a marker bundle, its appliance image, isolated Docker
networks with a known bridge name, and appliance containers on them.

Network safety: every network here is a Docker bridge the test creates (10.77.x.0/24 or
10.78.x.0/24, bridge `bpbr-a*`) and removes on teardown; the appliance never runs with host
networking and its DHCP only ever sees the test's own bridge.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.networks import Network

from bootpack.bundle import layout
from bootpack.bundle.manifest import Bundle, make_manifest
from bootpack.compiler import build_bundle
from bootpack.spec import load_spec
from tests.support.marker import write_arm64_artifacts
from tests.support.netmarker import nfs_root_tree, write_netmarker
from tests.support.vm import qemu_available

# pytest-xdist runs test files in worker processes gw0, gw1, ... of one session; each worker
# bakes its own bundles, so each gets its own image tag and network slot.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_WORKER_NUMBER = int(WORKER[2:]) if WORKER[2:].isdigit() else 0
# BOOTPACK_TEST_IMAGE: another tag, so concurrent sessions on one engine never run each other's.
IMAGE_TAG = os.environ.get("BOOTPACK_TEST_IMAGE") or f"bp-appl-test{WORKER and '-' + WORKER}:latest"
CAPS = ["NET_ADMIN", "NET_RAW", "SYS_ADMIN", "DAC_READ_SEARCH", "NET_BIND_SERVICE"]
# Unique per test session and worker, so concurrent sessions (other engineers, CI) and the
# workers of one session never collide: 10.77.SLOT.0/24 and friends, SLOT in 20..219.
_SESSION = os.getppid() if WORKER else os.getpid()
SLOT = 20 + (_SESSION % 50) * 4 + _WORKER_NUMBER % 4
KNOWN_MAC = "52:54:00:a7:00:01"
LIVE_MAC = "52:54:00:a7:00:02"
NFS_MAC = "52:54:00:a7:00:03"
ARM_MAC = "52:54:00:a7:00:04"  # an arm64 host: the same appliance serves a mixed rack
NFS_MARK = "BOOTPACK-NFS-ROOT"
# A file of the root tree owned by ids the appliance names differently (uid 102 is _rpc there,
# statd in a Debian image) or not at all (gid 4343): NFS must send these numbers as they are.
OWNED = ("OWNED", 102, 4343)


def spec_subnet() -> IPv4Network:
    return IPv4Network(f"10.77.{SLOT}.0/24")


def spec_text(subnet: IPv4Network) -> str:
    """The spec the appliance tests bake: server at .2, pool .100-.150, a known host at .20."""
    a = str(subnet.network_address).rsplit(".", 1)[0]
    return f"""schema = 1
[bundle]
name = "appliance-test"
version = "1.0.0"
description = "bootpack appliance tests"

[server]
address = "{a}.2"

[dhcp]
mode = "server"
subnet = "{subnet}"
range = ["{a}.100", "{a}.120"]
router = "{a}.1"
lease_time = 600

[loaders]
chains = ["bios", "uefi", "ipxe", "uefi-arm64"]

[menu]
title = "appliance test"
timeout = 1
default = "marker"

[images.marker]
architecture = "x86_64"
kernel = "vmlinuz"
initrd = "initrd.img"
squashfs = "squashfs.img"

[images.armmarker]
architecture = "arm64"
kernel = "Image"
initrd = "initrd-arm64.img"

[[entries]]
name = "marker"
image = "marker"
root = "ramdisk"
cmdline = "console=ttyS0 bootpack.entry=marker"

[[entries]]
name = "live"
image = "marker"
root = "live"
cmdline = "console=ttyS0 bootpack.entry=live"

[[entries]]
name = "shared"
image = "marker"
root = "nfs"
nfs_version = 4
cmdline = "console=ttyS0 bootpack.entry=nfs"

[[entries]]
name = "arm"
image = "armmarker"
root = "ramdisk"
cmdline = "console=ttyAMA0 bootpack.entry=arm"

[[hosts]]
name = "known"
mac = "{KNOWN_MAC}"
ip = "{a}.20"
entry = "marker"
cmdline = "bootpack.host=known"

[[hosts]]
name = "livehost"
mac = "{LIVE_MAC}"
ip = "{a}.21"
entry = "live"

[[hosts]]
name = "nfshost"
mac = "{NFS_MAC}"
ip = "{a}.22"
entry = "shared"
writable_root = true

[[hosts]]
name = "armhost"
mac = "{ARM_MAC}"
ip = "{a}.23"
entry = "arm"
cmdline = "bootpack.host=armhost"
"""


def add_root_tree(bundle: Path, image: str, tree: dict[str, bytes]) -> None:
    """Put an NFS root tree into a built bundle and refresh bundle.json (until image builds make
    real root trees, the tests bring a small one)."""
    root = bundle / layout.root_tree_path(image)
    for rel, data in tree.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755 if rel.startswith("bin/") or rel == "init" else 0o644)
        if rel == OWNED[0]:
            os.chown(target, OWNED[1], OWNED[2])
    old = Bundle.open(bundle).manifest
    manifest = make_manifest(bundle, name=old.name, version=old.version,
                             description=old.description, spec_digest=old.spec_digest,
                             bootpack_version=old.bootpack_version)
    (bundle / layout.MANIFEST).write_text(manifest.dumps())


def make_bundle(work: Path, extra_tree: dict[str, bytes] | None = None) -> Path:
    spec_dir = work / "spec"
    spec_dir.mkdir(parents=True, exist_ok=True)
    write_netmarker(spec_dir)
    write_arm64_artifacts(spec_dir)  # Image, initrd-arm64.img
    (spec_dir / "squashfs.img").write_bytes(bytes(range(256)) * 4096)  # 1 MiB stand-in
    (spec_dir / "spec.toml").write_text(spec_text(spec_subnet()))
    bundle = work / "bundle"
    build_bundle(load_spec(spec_dir / "spec.toml"), bundle)
    tree = {f"{NFS_MARK}": b"served by NFS-Ganesha from the bundle\n", "etc/hostname": b"marker\n",
            OWNED[0]: b"owned by 102:4343\n"}
    tree.update(extra_tree or {})
    add_root_tree(bundle, "marker", tree)
    return bundle


@functools.cache
def appliance_image() -> tuple[str, float, int]:
    """Build the test bundle and bake it (once per session). Returns (tag, seconds, size)."""
    work = Path(tempfile.mkdtemp(prefix="bp-appl-"))
    bundle = make_bundle(work, nfs_root_tree())
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bootpack", "image", str(bundle),
         "--tag", IMAGE_TAG], capture_output=True, text=True, env={**os.environ,
                                                                    "SOURCE_DATE_EPOCH": "1700000000"})
    assert result.returncode == 0, result.stderr + result.stdout
    seconds = time.monotonic() - start
    size = int(docker.from_env().images.get(IMAGE_TAG).attrs["Size"])
    shutil.rmtree(work, ignore_errors=True)
    return IMAGE_TAG, seconds, size


def docker_client_or_skip() -> docker.DockerClient:
    import pytest

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Docker engine: {exc}")
    return client


@dataclass
class BootNet:
    network: Network
    subnet: IPv4Network
    bridge: str

    def ip(self, host: int) -> str:
        return str(self.subnet.network_address + host)


@contextlib.contextmanager
def isolated_network(client: docker.DockerClient, subnet: IPv4Network, tag: str) -> Iterator[BootNet]:
    """A Docker bridge network named bp-appl-*, bridge bpbr-a*, removed on exit (with its
    containers). Docker allocates dynamic addresses only from .32-.63, away from the pool."""
    name = f"bp-appl-{SLOT}{tag}"
    bridge = f"bpbr-a{SLOT}{tag}"
    with contextlib.suppress(docker.errors.NotFound):
        _remove_network(client.networks.get(name))
    gateway = str(subnet.network_address + 1)
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
        subnet=str(subnet), gateway=gateway, iprange=str(IPv4Network(f"{subnet.network_address + 32}/27")))])
    network = client.networks.create(name, driver="bridge", ipam=ipam,
                                     options={"com.docker.network.bridge.name": bridge})
    try:
        yield BootNet(network, subnet, bridge)
    finally:
        _remove_network(network)


@contextlib.contextmanager
def vm_network(subnet: IPv4Network, tag: str) -> Iterator[BootNet]:
    """For tests that boot VMs: QEMU present (or fail), the appliance image built, and an
    isolated network on subnet."""
    import pytest

    if not qemu_available():
        pytest.fail("qemu-system-x86_64 and ipxe-qemu are needed (scripts/install --test)")
    client = docker_client_or_skip()
    appliance_image()
    with isolated_network(client, subnet, tag) as net:
        yield net


@contextlib.contextmanager
def tap_device(net: BootNet, name: str) -> Iterator[str]:
    """A tap device on the test network's bridge (removed afterwards)."""
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    subprocess.run(["ip", "tuntap", "add", "dev", name, "mode", "tap"], check=True)
    try:
        subprocess.run(["ip", "link", "set", name, "master", net.bridge, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def _remove_network(network: Network) -> None:
    network.reload()
    for container in network.containers:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True, v=True)
    with contextlib.suppress(docker.errors.APIError):
        network.remove()


def start_appliance(client: docker.DockerClient, net: BootNet, ip: str, args: list[str],
                    name: str, env: dict[str, str] | None = None, image: str = IMAGE_TAG,
                    platform: str | None = None) -> Container:
    """Create the appliance container with a fixed address on the test network and start it
    (platform: `docker run --platform`, e.g. linux/arm64 for the emulated arm64 appliance)."""
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True, v=True)
    networking = client.api.create_networking_config(
        {net.network.name: client.api.create_endpoint_config(ipv4_address=ip)})
    created = client.api.create_container(
        image, command=args, name=name, environment=env or {},
        host_config=client.api.create_host_config(cap_add=CAPS),
        networking_config=networking, platform=platform)
    client.api.start(created["Id"])
    return client.containers.get(created["Id"])


def wait_healthy(container: Container, timeout: float = 90) -> float:
    """Seconds until `bootpack health` passes inside the container."""
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < timeout:
        container.reload()
        if container.status != "running":
            raise AssertionError(f"appliance exited:\n{container.logs().decode()[-4000:]}")
        code, out = container.exec_run(["bootpack", "health"])
        last = out.decode()
        if code == 0:
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"not healthy after {timeout} s:\n{last}\n{container.logs().decode()[-4000:]}")


def dhcp_offers(client: docker.DockerClient, net: BootNet, mac: str, pxe: bool = False,
                timeout: float = 4.0, arch: int = 0,
                user_class: str | None = None) -> list[dict[str, object]]:
    """Run the DHCP probe as a client in a throw-away container on the test network."""
    args = ["/opt/bootpack/bin/python", "-m", "bootpack.appliance.dhcp_probe", "--interface", "eth0",
            "--mac", mac, "--timeout", str(timeout)] + (["--pxe", "--arch", str(arch)] if pxe else [])
    args += ["--user-class", user_class] if user_class else []
    try:
        output = client.containers.run(IMAGE_TAG, entrypoint=args, network=net.network.name,
                                       cap_add=["NET_RAW"], remove=True, stdout=True, stderr=False)
    except docker.errors.ContainerError:
        return []  # exit status 1: no offer
    return [json.loads(line) for line in output.decode().splitlines() if line.strip()]
