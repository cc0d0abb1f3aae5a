"""registry/artifact.py: the bundle's OCI artifact format (no registry needed)."""

from __future__ import annotations

import json
from pathlib import Path

from bootpack import __version__
from bootpack.bundle import Bundle
from bootpack.bundle.manifest import DIGEST_KEY
from bootpack.cli import main
from bootpack.files import sha256_bytes
from bootpack.registry.artifact import (
    ARTIFACT_TYPE,
    LAYER_TYPE,
    Blob,
    archive_layer,
    bundle_manifest_bytes,
    is_bundle_manifest,
)
from bootpack.registry.client import Manifest
from tests.support.specs import LAB, write_spec


def as_manifest(raw: bytes) -> Manifest:
    data = json.loads(raw)
    return Manifest(raw=raw, digest=sha256_bytes(raw), media_type=data["mediaType"], data=data)


def test_manifest_bytes(tmp_path: Path) -> None:
    assert main(["-q", "build", str(write_spec(tmp_path / "in", LAB)), "-o", str(tmp_path / "out")]) == 0
    bundle = Bundle.open(tmp_path / "out")
    archive = Blob("sha256:" + "a" * 64, 1234)
    raw = bundle_manifest_bytes(bundle, archive, "2026-01-02T03:04:05Z")
    assert raw == bundle_manifest_bytes(bundle, archive, "2026-01-02T03:04:05Z")  # one serialization
    m = as_manifest(raw)
    assert is_bundle_manifest(m) and m.data["artifactType"] == ARTIFACT_TYPE
    assert archive_layer(m) == archive
    assert m.data["layers"][0]["annotations"]["org.opencontainers.image.title"] == "lab-1.0.0.tar.gz"
    assert m.annotations[DIGEST_KEY] == bundle.digest
    assert m.annotations["dev.bootpack.version"] == __version__
    assert m.annotations["org.opencontainers.image.created"] == "2026-01-02T03:04:05Z"


def test_not_a_bundle_and_bad_layers() -> None:
    image = as_manifest(json.dumps({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
                                    "layers": []}).encode())
    assert not is_bundle_manifest(image)
    good = {"mediaType": LAYER_TYPE, "digest": "sha256:" + "b" * 64, "size": 1}
    for layers in ([], [good, good], [{**good, "size": "1"}], [{**good, "digest": "sha256:xyz"}]):
        m = as_manifest(json.dumps({"mediaType": "x", "artifactType": ARTIFACT_TYPE,
                                    "layers": layers}).encode())
        assert is_bundle_manifest(m) and archive_layer(m) is None
