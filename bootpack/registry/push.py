"""Push a bundle as an OCI artifact: check its version tag, upload it, move `latest`.

Each step is its own function so the release workflow can check every tag before uploading
anything and move the `latest` tags only after every version tag is in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bundle.manifest import Bundle
from ..errors import BootpackError
from ..files import sha256_file
from ..progress import NORMAL, Progress
from .artifact import (
    A_CREATED,
    A_DIGEST,
    EMPTY_DATA,
    Blob,
    bundle_manifest_bytes,
    created_now,
    is_bundle_manifest,
)
from .client import Manifest, RegistryClient
from .reference import LATEST, Reference


@dataclass(frozen=True)
class PushResult:
    ref: Reference  # with the version tag
    digest: str  # manifest digest
    pushed: bool  # False: the registry already held this bundle under this version
    raw: bytes  # the manifest's bytes, for moving `latest` to it


def check_bundle_tag(existing: Manifest | None, ref: Reference, bundle: Bundle, force: bool) -> bool:
    """Whether the bundle must be pushed to ref: False if already there, error on a conflict."""
    if existing is None:
        return True
    if is_bundle_manifest(existing):
        have = existing.annotations.get(A_DIGEST)
        if have == bundle.digest:
            return False
        what = f"bundle {have} (pushed {existing.annotations.get(A_CREATED, 'at an unknown time')})"
    else:
        what = f"something that is not a bootpack bundle ({existing.media_type})"
    if force:
        return True
    raise BootpackError(f"{ref} already holds {what}; published versions are immutable: bump "
                        f"[bundle] version (this bundle is {bundle.digest}), or pass --force to "
                        "replace it")


def push_bundle(client: RegistryClient, ref: Reference, bundle: Bundle, *, existing: Manifest | None,
                push: bool, progress: Progress | None = None) -> PushResult:
    """Publish the bundle's archive under ref (its version tag), or, with push=False (the tag
    already holds this bundle, see check_bundle_tag), report what is there."""
    if not push:
        assert existing is not None
        return PushResult(ref=ref, digest=existing.digest, pushed=False, raw=existing.raw)
    progress = progress or Progress(NORMAL)
    archive = Blob(*sha256_file(bundle.archive))
    with progress.step(f"Uploading {bundle.archive.name} ({archive.size / 1e6:.1f} MB)"):
        client.push_blob(ref, bundle.archive, archive.digest, archive.size)
        client.push_bytes(ref, EMPTY_DATA)
    raw = bundle_manifest_bytes(bundle, archive, created_now())
    digest = client.put_manifest(ref, raw)
    return PushResult(ref=ref, digest=digest, pushed=True, raw=raw)


def move_latest(client: RegistryClient, repo: Reference, result: PushResult) -> None:
    """repo:latest follows every version actually pushed; a no-op push sets it only when absent."""
    latest = repo.with_tag(LATEST)
    if result.pushed or client.head_manifest(latest) is None:
        client.put_manifest(latest, result.raw)
