"""The OCI artifact format of a bundle (OCI 1.1 artifact guidance):

    artifactType  application/vnd.bootpack.bundle.v1
    config        the empty descriptor (application/vnd.oci.empty.v1+json, `{}`)
    layers[0]     the bundle's deterministic archive, application/vnd.bootpack.bundle.layer.v1.tar+gzip,
                  titled NAME-VERSION.tar.gz (so `oras pull` writes a sensible file name)
    annotations   dev.bootpack.bundle.{name,version,digest}, org.opencontainers.image.{title,version,
                  created}, dev.bootpack.version

The bundle digest (bundle.json's `digest`, over every file's sha256) is the bundle's identity:
pushing a version whose tag already holds that digest is a no-op; a different digest is refused
unless --force.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass

from .. import __version__
from ..bundle.manifest import BOOTPACK_VERSION_KEY, DIGEST_KEY, NAME_KEY, VERSION_KEY, Bundle
from ..files import sha256_bytes
from .client import OCI_MANIFEST, Manifest

ARTIFACT_TYPE = "application/vnd.bootpack.bundle.v1"
LAYER_TYPE = "application/vnd.bootpack.bundle.layer.v1.tar+gzip"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"

A_NAME = NAME_KEY
A_VERSION = VERSION_KEY
A_DIGEST = DIGEST_KEY
A_BOOTPACK = BOOTPACK_VERSION_KEY
A_CREATED = "org.opencontainers.image.created"
A_TITLE = "org.opencontainers.image.title"
A_OCI_VERSION = "org.opencontainers.image.version"


@dataclass(frozen=True)
class Blob:
    """A content descriptor: what a manifest says about one of its blobs."""

    digest: str
    size: int


def is_bundle_manifest(m: Manifest) -> bool:
    return m.data.get("artifactType") == ARTIFACT_TYPE or (
        (m.data.get("config") or {}).get("mediaType") == ARTIFACT_TYPE)


def archive_layer(m: Manifest) -> Blob | None:
    """The bundle manifest's one archive layer, or None when it has not exactly one valid one."""
    layers = [lay for lay in m.data.get("layers") or [] if lay.get("mediaType") == LAYER_TYPE]
    if len(layers) != 1 or not isinstance(layers[0].get("size"), int) or \
            not re.fullmatch(r"sha256:[0-9a-f]{64}", str(layers[0].get("digest"))):
        return None
    return Blob(str(layers[0]["digest"]), int(layers[0]["size"]))


def created_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def bundle_manifest_bytes(bundle: Bundle, archive: Blob, created: str) -> bytes:
    """The artifact's manifest, serialized once so its digest is known before upload."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256_bytes(EMPTY_DATA), "size": len(EMPTY_DATA),
                   "data": "e30="},
        "layers": [{
            "mediaType": LAYER_TYPE,
            "digest": archive.digest,
            "size": archive.size,
            "annotations": {A_TITLE: f"{bundle.name}-{bundle.version}.tar.gz"},
        }],
        "annotations": {
            A_NAME: bundle.name,
            A_VERSION: bundle.version,
            A_DIGEST: bundle.digest,
            A_BOOTPACK: __version__,
            A_TITLE: bundle.name,
            A_OCI_VERSION: bundle.version,
            A_CREATED: created,
        },
    }
    return json.dumps(manifest, indent=2, sort_keys=False).encode() + b"\n"
