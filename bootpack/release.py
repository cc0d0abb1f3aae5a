"""`bootpack push`: the release workflow, composed of the compiler, the appliance baker and the
registry.

SPEC (built first) or BUNDLE_DIR (verified) -> REF:VERSION (the bundle artifact) and
REF:VERSION-appliance (its appliance image, baked when there is none). Both version tags are
checked before anything is uploaded: a tag that already holds the same bundle (same bundle
digest) or the same image is left alone, a different one is refused unless --force. Then the
image, then the artifact, and only when both version tags are in place the `latest` tags: a
failed push never leaves `latest` or `latest-appliance` pointing at half a release.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .appliance.image import bake_image
from .bundle.manifest import DIGEST_KEY, Bundle
from .bundle.verify import verified_archive
from .compiler import build_bundle
from .errors import BootpackError
from .images.docker_image import DOCKER_ARCH
from .progress import NORMAL, Progress
from .registry import image as registry_image
from .registry.client import OCI_MANIFEST, Manifest, connect
from .registry.push import PushResult, check_bundle_tag, move_latest, push_bundle
from .registry.reference import LATEST, Reference, appliance_tag, check_version_tag, parse_reference
from .registry.signature import Signed, load_private_key, sign_bundle
from .spec import load_spec
from .spec.model import build_host_architecture


@dataclass(frozen=True)
class ImagePush:
    ref: Reference
    digest: str
    pushed: bool


@dataclass(frozen=True)
class _ImagePlan:
    client: Any  # the Docker engine
    image_id: str
    ref: Reference
    existing: Manifest | None
    push: bool


@dataclass(frozen=True)
class PublishResult:
    bundle: Bundle
    artifact: PushResult
    image: ImagePush | None
    signature: Signed | None = None


def open_source(source: Path, workdir: Path, progress: Progress) -> Bundle:
    """SPEC (built into workdir) or BUNDLE_DIR (verified) -> a bundle with a verified archive."""
    if source.is_file():
        loaded = load_spec(source)
        check_version_tag(loaded.spec.bundle.version)  # before a possibly long build
        bundle = build_bundle(loaded, workdir / loaded.spec.bundle.name, progress=progress).bundle
    elif source.is_dir():
        bundle = verified_archive(Bundle.open(source), workdir, progress)
    elif source.exists():
        raise BootpackError(f"{source}: neither a spec file nor a bundle directory")
    else:
        raise BootpackError(f"{source}: no such spec file or bundle directory")
    check_version_tag(bundle.version)
    return bundle


def ensure_appliance_image(bundle: Bundle, *, image: str | None = None, client: Any = None,
                           progress: Progress | None = None) -> str:
    """The ID of the local appliance image for this bundle.

    With `image` (--image), that image; it must not carry a different bundle's digest label.
    Without, the newest local image labelled dev.bootpack.bundle.digest=<bundle digest>, baked
    first when there is none (so `bootpack push SPEC REF` is the whole release step).
    """
    client = client or registry_image.docker_client()
    if image is not None:
        found = registry_image.local_image(client, image)
        label = (found.labels or {}).get(DIGEST_KEY)
        if label is not None and label != bundle.digest:
            raise BootpackError(f"--image {image} serves bundle {label}, not {bundle.directory} "
                                f"({bundle.digest}); bake this bundle with `bootpack image`")
        return str(found.id)
    found = registry_image.find_appliance_image(  # this machine's: what `push` bakes too
        client, bundle.digest, DOCKER_ARCH[build_host_architecture()])
    if found is not None:
        return str(found.id)
    tag = f"bootpack/{bundle.name}:{bundle.version}"
    (progress or Progress(NORMAL)).info(
        f"no local appliance image for bundle {bundle.name} {bundle.version}; "
        f"baking {tag} (skip with --no-image)")
    return bake_image(bundle, tag, progress=progress, client=client).id


def publish(source: Path, ref: str, *, image: str | None = None, with_image: bool = True,
            force: bool = False, insecure: bool = False, progress: Progress | None = None,
            sign: Path | None = None) -> PublishResult:
    """`bootpack push`: SPEC or BUNDLE_DIR -> REF:VERSION (artifact) and REF:VERSION-appliance.

    With sign (--sign KEY), the artifact gets an Ed25519 signature (bootpack.registry.signature)
    before `latest` moves; the private key is read here and never sent anywhere."""
    progress = progress or Progress(NORMAL)
    repo = parse_reference(ref, allow_tag=False, allow_digest=False)
    key = load_private_key(sign) if sign is not None else None  # a bad key fails before any work
    with tempfile.TemporaryDirectory(prefix="bootpack-push-") as tmp:
        bundle = open_source(source, Path(tmp), progress)
        docker = image_id = None
        if with_image:
            docker = registry_image.docker_client()
            image_id = ensure_appliance_image(bundle, image=image, client=docker, progress=progress)
        client = connect(repo.registry, insecure)

        # Decide everything before uploading anything.
        artifact_ref = repo.with_tag(bundle.version)
        existing_artifact = client.get_manifest_raw(artifact_ref)
        push_artifact = check_bundle_tag(existing_artifact, artifact_ref, bundle, force)
        plan = None
        if image_id is not None:
            image_ref = repo.with_tag(appliance_tag(bundle.version))
            existing_image = client.get_manifest_raw(image_ref)
            plan = _ImagePlan(docker, image_id, image_ref, existing_image, registry_image.check_image_tag(
                existing_image, image_ref, docker, image_id, force))

        # The version tags: the image, then the bundle.
        image_result = None
        if plan is not None and plan.push:
            with progress.step(f"Pushing the appliance image to {plan.ref}"):
                digest = registry_image.push_image(plan.client, plan.image_id, plan.ref, progress)
            image_result = ImagePush(plan.ref, digest, True)
        elif plan is not None:
            assert plan.existing is not None
            image_result = ImagePush(plan.ref, plan.existing.digest, False)
        artifact = push_bundle(client, artifact_ref, bundle, existing=existing_artifact,
                               push=push_artifact, progress=progress)
        signed = None
        if key is not None:
            pushed = Manifest(raw=artifact.raw, digest=artifact.digest, media_type=OCI_MANIFEST,
                              data=json.loads(artifact.raw))
            with progress.step(f"Signing {artifact.ref}@{artifact.digest}"):
                signed = sign_bundle(client, artifact.ref, pushed, key)

        # Only now the `latest` tags, both versions being in place.
        if plan is not None and plan.push:
            latest_image = repo.with_tag(appliance_tag(LATEST))
            with progress.step(f"Moving {latest_image.tag} to {bundle.version}"):
                registry_image.push_image(plan.client, plan.image_id, latest_image, progress)
        move_latest(client, repo, artifact)
        return PublishResult(bundle=bundle, artifact=artifact, image=image_result, signature=signed)
