"""Publish and fetch versioned bundles through an OCI registry (`bootpack push|pull|inspect`).

Layout of a repository REF (docs/registry.md has the user's view):

    REF:VERSION             bundle artifact (artifactType application/vnd.bootpack.bundle.v1)
    REF:latest              bundle artifact most recently pushed
    REF:VERSION-appliance   appliance image serving that bundle (a normal Docker image)
    REF:latest-appliance    appliance image most recently pushed

A push checks both version tags before uploading anything: a tag that already holds the same
bundle (same bundle digest) or the same image is left alone, a different one is refused unless
--force. The image goes first, then the artifact, then the `latest` tags, so a failed push never
leaves a version tag pointing at half a release.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..progress import NORMAL, Progress
from .artifact import BundleSource, PullResult, PushResult, check_bundle_tag, open_bundle, push_bundle
from .client import RegistryClient
from .reference import LATEST, Reference, appliance_tag, parse_reference

__all__ = ["PublishResult", "fetch", "inspect", "inspect_table", "parse_reference", "publish"]


@dataclass(frozen=True)
class ImagePush:
    ref: Reference
    digest: str
    pushed: bool


@dataclass(frozen=True)
class PublishResult:
    bundle: BundleSource
    artifact: PushResult
    image: ImagePush | None


def connect(registry: str, insecure: bool) -> RegistryClient:
    client = RegistryClient(registry, insecure=insecure)
    client.connect()
    return client


def publish(source: Path, ref: str, *, image: str | None = None, with_image: bool = True,
            force: bool = False, insecure: bool = False, progress: Progress | None = None) -> PublishResult:
    """`bootpack push`: SPEC or BUNDLE_DIR -> REF:VERSION (artifact) and REF:VERSION-appliance."""
    from . import image as appliance

    progress = progress or Progress(NORMAL)
    repo = parse_reference(ref, allow_tag=False, allow_digest=False)
    with tempfile.TemporaryDirectory(prefix="bootpack-push-") as tmp:
        bundle = open_bundle(source, Path(tmp), progress)
        docker = image_id = None
        if with_image:
            docker = appliance.docker_client()
            image_id = appliance.ensure_appliance_image(bundle.directory, bundle.manifest, image=image,
                                                   client=docker, progress=progress)
        client = connect(repo.registry, insecure)
        # Decide everything before uploading anything.
        artifact_ref = repo.with_tag(bundle.version)
        existing_artifact = client.get_manifest_raw(artifact_ref)
        check_bundle_tag(existing_artifact, artifact_ref, bundle, force)
        image_result = None
        if docker is not None and image_id is not None:
            image_ref = repo.with_tag(appliance_tag(bundle.version))
            existing_image = client.get_manifest_raw(image_ref)
            if appliance.check_image_tag(existing_image, image_ref, docker, image_id, force):
                with progress.step(f"Pushing the appliance image to {image_ref}"):
                    digest = appliance.push_image(docker, image_id, image_ref, progress)
                    appliance.push_image(docker, image_id, repo.with_tag(appliance_tag(LATEST)),
                                         progress)
                image_result = ImagePush(image_ref, digest, True)
            else:
                assert existing_image is not None
                image_result = ImagePush(image_ref, existing_image.digest, False)
        artifact = push_bundle(client, repo, bundle, force=force, progress=progress,
                               existing=existing_artifact, checked=True)
        return PublishResult(bundle=bundle, artifact=artifact, image=image_result)


def fetch(ref: str, output: Path, *, insecure: bool = False,
          progress: Progress | None = None) -> PullResult:
    """`bootpack pull`: REF[:VERSION|@DIGEST] (default :latest) -> verified bundle in output."""
    from .artifact import pull_bundle

    parsed = parse_reference(ref)
    if parsed.tag is None and parsed.digest is None:
        parsed = parsed.with_tag(LATEST)
    client = connect(parsed.registry, insecure)
    return pull_bundle(client, parsed, output, progress)


def inspect(ref: str, *, insecure: bool = False) -> list[dict[str, object]]:
    """`bootpack inspect`: what is published in REF (or at REF:TAG / REF@DIGEST)."""
    from .artifact import inspect_repository

    parsed = parse_reference(ref)
    client = connect(parsed.registry, insecure)
    return [p.as_dict() for p in inspect_repository(client, parsed)]


def inspect_table(rows: list[dict[str, object]]) -> str:
    """inspect()'s rows as an aligned text table."""
    header = ("TAG", "KIND", "VERSION", "CREATED", "SIZE", "DIGEST", "BUNDLE DIGEST")
    table = [header] + [(
        str(r["tag"]), str(r["kind"]), str(r["version"] or "-"), str(r["created"] or "-"),
        "-" if r["size"] is None else f"{int(str(r['size'])) / 1e6:.1f} MB", str(r["digest"]),
        str(r["bundle_digest"] or "-"),
    ) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
                     for row in table)
