"""The appliance image for arm64 and as a multi-platform image, for real: `bootpack image
--platform linux/amd64,linux/arm64 --push` builds both images of the appliance test bundle (the
arm64 one under binfmt_misc + qemu-user-static, every RUN step emulated), pushes them and the
index to a real registry (Debian's docker-registry on 127.0.0.1), the engine pulls each platform
back through the index, and the arm64 appliance runs with `--platform linux/arm64` on a Docker
network of this test's own and serves TFTP and HTTP.

Slow (marked `slow`): a cold arm64 build is many minutes here; with the layer cache warm only the
bootpack and bundle layers are built again. Network safety: the appliance runs in proxy-DHCP mode
on a bridge this module creates and removes (never the host's network); the registry listens on
127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from bootpack.appliance.health import tftp_read
from bootpack.bundle import layout
from bootpack.bundle.manifest import DIGEST_KEY, Bundle
from bootpack.registry.client import DOCKER_LIST, connect
from bootpack.registry.reference import parse_reference
from tests.support.appliance_env import (
    SLOT,
    docker_client_or_skip,
    isolated_network,
    make_bundle,
    start_appliance,
    wait_healthy,
)
from tests.support.marker import debian_kernel
from tests.support.netmarker import nfs_root_tree
from tests.support.registry_server import Registry, registry_available, run_registry

pytestmark = [pytest.mark.docker, pytest.mark.slow,
              pytest.mark.skipif(not registry_available(),
                                 reason="needs /usr/bin/docker-registry (scripts/install --test)")]

REPOSITORY = "arm64-appliance/boot"
PLATFORMS = {"amd64": "linux/amd64", "arm64": "linux/arm64"}
BUILD_TIMEOUT = 3 * 3600  # a cold emulated build on a loaded 2-core machine; never a timing assert


@dataclass(frozen=True)
class Published:
    ref: str  # REGISTRY/REPOSITORY:1.0, the index
    bundle: Path
    bundle_digest: str
    images: dict[str, str]  # Docker architecture -> local image id
    output: str


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return docker_client_or_skip()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture(scope="module")
def published(client: docker.DockerClient, registry: Registry,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    work = tmp_path_factory.mktemp("arm64-appliance")
    bundle = make_bundle(work, nfs_root_tree())  # the appliance tests' bundle, arm64 entry and all
    (work / "docker-config").mkdir()
    (work / "docker-config/config.json").write_text("{}")  # never the user's logins
    ref = f"{registry.host}/{REPOSITORY}:1.0"
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bootpack", "image", str(bundle), "--tag", ref,
         "--platform", "linux/amd64,linux/arm64", "--push", "--insecure"],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT,
        env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000",
             "DOCKER_CONFIG": str(work / "docker-config")})
    assert result.returncode == 0, result.stderr[-5000:] + result.stdout
    steps = "\n".join(line for line in result.stderr.splitlines() if " ... done (" in line)
    print(f"\nbootpack image --platform linux/amd64,linux/arm64 --push: "
          f"{time.monotonic() - start:.0f} s\n{steps}\n{result.stdout}")
    images = {arch: str(client.images.get(f"{ref}-{arch}").id) for arch in PLATFORMS}
    try:
        yield Published(ref, bundle, Bundle.open(bundle).digest, images, result.stdout)
    finally:
        # Untag only: noprune keeps the parent layers, the next build's cache.
        for tag in [ref, *(f"{ref}-{arch}" for arch in PLATFORMS)]:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(tag, noprune=True)


def test_local_images_are_built_for_their_platforms(client: docker.DockerClient,
                                                    published: Published) -> None:
    for arch, image_id in published.images.items():
        attrs = client.images.get(image_id).attrs
        assert (attrs["Os"], attrs["Architecture"]) == ("linux", arch)
        assert attrs["Config"]["Labels"][DIGEST_KEY] == published.bundle_digest
    assert published.images["amd64"] != published.images["arm64"]
    assert f"index  {published.ref}@sha256:" in published.output


def test_index_lists_both_platforms_with_the_architecture_of_each_config(
        published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no logins: an empty folder
    ref = parse_reference(published.ref)
    registry = connect(ref.registry, insecure=True)
    index = registry.get_manifest_raw(ref)
    assert index is not None and index.media_type == DOCKER_LIST
    platforms = {}
    for entry in index.data["manifests"]:
        manifest = registry.get_manifest_raw(ref.with_digest(entry["digest"]))
        assert manifest is not None
        config_digest = manifest.data["config"]["digest"]
        config = registry.fetch_json_blob(ref, config_digest)
        assert config["architecture"] == entry["platform"]["architecture"]
        assert config["os"] == entry["platform"]["os"] == "linux"
        assert config["config"]["Labels"][DIGEST_KEY] == published.bundle_digest
        platforms[entry["platform"]["architecture"]] = config_digest
    # the image config digest is the engine's image id: the index points at what was built
    assert platforms == published.images


def test_the_engine_pulls_each_platform_through_the_index(client: docker.DockerClient,
                                                         published: Published) -> None:
    name, _, tag = published.ref.rpartition(":")
    for arch, platform in PLATFORMS.items():
        assert client.images.pull(name, tag=tag, platform=platform).id == published.images[arch]


@pytest.fixture(scope="module")
def arm_appliance(client: docker.DockerClient, published: Published) -> Iterator[tuple[str, Container]]:
    with isolated_network(client, IPv4Network(f"10.76.{SLOT}.128/25"), "m") as net:
        address = net.ip(2)
        container = start_appliance(client, net, address, ["--dhcp", "proxy"],
                                    f"arm64-appliance-{SLOT}", image=published.images["arm64"],
                                    platform="linux/arm64")
        try:
            seconds = wait_healthy(container, timeout=900)  # every daemon emulated
            print(f"\narm64 appliance healthy {seconds:.0f} s after start (emulated)")
            yield address, container
        finally:
            container.remove(force=True, v=True)


def test_arm64_appliance_runs_arm64_and_is_healthy(arm_appliance: tuple[str, Container]) -> None:
    _, container = arm_appliance
    code, out = container.exec_run(["uname", "-m"])
    assert (code, out.decode().strip()) == (0, "aarch64")
    code, out = container.exec_run(["bootpack", "health"])
    report = out.decode()
    assert code == 0 and report.splitlines()[-1] == "healthy" and "FAIL" not in report, report
    for service in ("dnsmasq", "tftpd", "http", "nfs"):  # proxy DHCP is dnsmasq
        assert f"ok   service {service}" in report, report


def test_arm64_appliance_serves_the_nbp_over_tftp_and_files_over_http(
        arm_appliance: tuple[str, Container], published: Published) -> None:
    address, _ = arm_appliance
    result = subprocess.run(["curl", "-sS", "--max-time", "60", "-o", "-",
                             f"tftp://{address}/pxelinux.0"], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == Path("/usr/lib/PXELINUX/lpxelinux.0").read_bytes()  # as pxelinux.0
    data, options = tftp_read(address, "bootaa64.efi", timeout=10)  # the arm64 clients' NBP
    assert data == (published.bundle / layout.TFTP_DIR / "bootaa64.efi").read_bytes()
    assert options["tsize"] == len(data)
    kernel = debian_kernel().read_bytes()
    with urllib.request.urlopen(f"http://{address}/images/marker/vmlinuz", timeout=60) as response:
        assert response.status == 200
        assert hashlib.sha256(response.read()).digest() == hashlib.sha256(kernel).digest()

