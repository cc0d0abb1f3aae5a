"""bootpack.registry.image's multi-platform index against a real registry (Debian's
docker-registry on 127.0.0.1): small per-platform images made with the registry client stand in
for the appliance images the Docker engine pushes (the real ones: tests/appliance/test_arm64.py)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootpack.bundle.manifest import DIGEST_KEY
from bootpack.registry.client import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    RegistryError,
    connect,
)
from bootpack.registry.image import find_appliance_image, push_platform_index
from bootpack.registry.reference import Reference, parse_reference
from tests.support.registry_server import Registry, empty_docker_config, registry_available, run_registry

pytestmark = pytest.mark.skipif(not registry_available(),
                                reason="needs /usr/bin/docker-registry (scripts/install --test)")

LAYER_TYPE = {DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
              OCI_MANIFEST: "application/vnd.oci.image.layer.v1.tar+gzip"}
CONFIG_TYPE = {DOCKER_MANIFEST: "application/vnd.docker.container.image.v1+json",
               OCI_MANIFEST: "application/vnd.oci.image.config.v1+json"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture
def client(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RegistryClient:
    empty_docker_config(tmp_path, monkeypatch)
    return connect(registry.host, insecure=True)


def push_image(client: RegistryClient, ref: Reference, config: dict[str, Any],
               media_type: str = DOCKER_MANIFEST) -> str:
    """A one-layer image whose config says config; returns its manifest digest."""
    layer = json.dumps(config).encode()  # any bytes will do: nobody unpacks it
    config_raw = json.dumps({**config, "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": media_type,
                "config": {"mediaType": CONFIG_TYPE[media_type], "size": len(config_raw),
                           "digest": client.push_bytes(ref, config_raw)},
                "layers": [{"mediaType": LAYER_TYPE[media_type], "size": len(layer),
                            "digest": client.push_bytes(ref, layer)}]}
    kind = "oci" if media_type == OCI_MANIFEST else "docker"
    return client.put_manifest(ref.with_tag(f"{config['architecture'] or 'none'}-{kind}"),
                               json.dumps(manifest).encode(), media_type)


@pytest.mark.parametrize(("child", "index"), [(DOCKER_MANIFEST, DOCKER_LIST), (OCI_MANIFEST, OCI_INDEX)])
def test_index_lists_each_image_with_its_configs_platform(registry: Registry, client: RegistryClient,
                                                          child: str, index: str) -> None:
    kind = "oci" if child == OCI_MANIFEST else "docker"
    ref = parse_reference(f"{registry.host}/site/appliance-{kind}:1.0")
    amd = push_image(client, ref, {"architecture": "amd64", "os": "linux"}, child)
    arm = push_image(client, ref, {"architecture": "arm64", "os": "linux", "variant": "v8"}, child)
    digest = push_platform_index(client, ref, [amd, arm])
    stored = client.get_manifest_raw(ref)
    assert stored is not None and stored.digest == digest and stored.media_type == index
    assert [(m["digest"], m["mediaType"], m["platform"]) for m in stored.data["manifests"]] == [
        (amd, child, {"architecture": "amd64", "os": "linux"}),
        (arm, child, {"architecture": "arm64", "os": "linux", "variant": "v8"})]
    for entry in stored.data["manifests"]:  # sizes are the stored manifests' own
        found = client.get_manifest_raw(ref.with_digest(entry["digest"]))
        assert found is not None and entry["size"] == len(found.raw)


def test_mixed_manifest_types_are_refused(registry: Registry, client: RegistryClient) -> None:
    ref = parse_reference(f"{registry.host}/site/mixed:1.0")
    amd = push_image(client, ref, {"architecture": "amd64", "os": "linux"}, DOCKER_MANIFEST)
    arm = push_image(client, ref, {"architecture": "arm64", "os": "linux"}, OCI_MANIFEST)
    with pytest.raises(RegistryError, match="mix manifest types"):
        push_platform_index(client, ref, [amd, arm])
    assert client.get_manifest_raw(ref) is None


def test_an_image_whose_config_names_no_architecture_is_refused(registry: Registry,
                                                                 client: RegistryClient) -> None:
    ref = parse_reference(f"{registry.host}/site/noarch:1.0")
    digest = push_image(client, ref, {"architecture": "", "os": "linux"})
    with pytest.raises(RegistryError, match="names no architecture/os"):
        push_platform_index(client, ref, [digest])


def test_an_absent_image_is_named(registry: Registry, client: RegistryClient) -> None:
    ref = parse_reference(f"{registry.host}/site/absent:1.0")
    with pytest.raises(RegistryError, match="pushed image is missing"):
        push_platform_index(client, ref, ["sha256:" + "0" * 64])


def test_a_registry_refusing_the_index_is_said_so(registry: Registry, client: RegistryClient,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # distribution 2.8 takes indexes; a registry that does not is stood in for by its answer
    # (HTTP 415 from the manifest PUT), the per-platform images being real.
    ref = parse_reference(f"{registry.host}/site/refused:1.0")
    amd = push_image(client, ref, {"architecture": "amd64", "os": "linux"})

    def refuse(self: RegistryClient, ref: Reference, raw: bytes, media_type: str = "") -> str:
        raise RegistryError(f"{self.registry}: storing the manifest at {ref} failed: HTTP 415 "
                            "(MANIFEST_INVALID: manifest invalid)")

    monkeypatch.setattr(RegistryClient, "put_manifest", refuse)
    with pytest.raises(RegistryError, match="refused the multi-platform index") as exc:
        push_platform_index(client, ref, [amd])
    assert amd in str(exc.value) and "one --platform per tag" in str(exc.value)


def load_labelled_image(client: Any, tag: str, architecture: str, digest: str, created: str) -> str:
    """A one-empty-layer image of that architecture, loaded into the real engine (`docker
    load` keeps the config's architecture, unlike a FROM-scratch build on Docker 20.10)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w"):
        pass
    diff_id = "sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()
    config = json.dumps({"architecture": architecture, "os": "linux", "created": created,
                         "config": {"Labels": {DIGEST_KEY: digest}},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps([{"Config": "config.json", "RepoTags": [tag],
                            "Layers": ["layer.tar"]}]).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in (("layer.tar", layer.getvalue()), ("config.json", config),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (image,) = client.images.load(archive.getvalue())
    return str(image.id)


@pytest.mark.docker
def test_the_local_appliance_image_is_found_for_one_architecture() -> None:
    # `bootpack image --platform` leaves one image per platform with the same bundle label:
    # `bootpack push` must take this machine's, not the newest of them.
    from tests.support.appliance_env import docker_client_or_skip

    client = docker_client_or_skip()
    digest = "sha256:" + hashlib.sha256(f"arm64-appliance {os.getpid()}".encode()).hexdigest()
    tags = [f"arm64-appliance-find-{arch}:{os.getpid()}" for arch in ("amd64", "arm64")]
    try:
        amd = load_labelled_image(client, tags[0], "amd64", digest, "2024-01-01T00:00:00Z")
        arm = load_labelled_image(client, tags[1], "arm64", digest, "2025-01-01T00:00:00Z")
        assert find_appliance_image(client, digest).id == arm  # the newest, whatever its CPU
        assert find_appliance_image(client, digest, "amd64").id == amd
        assert find_appliance_image(client, digest, "arm64").id == arm
        assert find_appliance_image(client, digest, "riscv64") is None
    finally:
        for tag in tags:
            with contextlib.suppress(Exception):
                client.images.remove(tag, force=True)
