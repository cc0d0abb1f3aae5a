"""The appliance image of a bundle: find it locally, push it with the Docker SDK.

The Docker engine does the image push (layers, its own credentials from the X-Registry-Auth
header the SDK builds from Docker's config and credential helpers). Whether the engine talks
HTTPS or plain HTTP to a registry is the engine's decision: 127.0.0.0/8 is plain HTTP by default,
other plain-HTTP registries must be listed in the engine's `insecure-registries`.

`ensure_appliance_image` is the seam for `bootpack image`: today it finds a local image carrying
the bundle's digest label (or takes the one given with --image); once the appliance builder lands
it can build the image when none exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BootpackError
from ..progress import NORMAL, Progress
from .client import Manifest
from .reference import Reference

LABEL_DIGEST = "dev.bootpack.bundle.digest"
LABEL_VERSION = "dev.bootpack.bundle.version"


def docker_client() -> Any:
    from ..external import docker_client as engine

    try:
        return engine()
    except BootpackError as exc:
        raise BootpackError(f"{exc}, or push only the bundle with --no-image") from None


def _local_image(client: Any, name: str) -> Any:
    import docker.errors

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        raise BootpackError(f"--image {name}: no such image in the local Docker engine") from None
    except docker.errors.APIError as exc:
        raise BootpackError(f"--image {name}: {exc.explanation or exc}") from None


def find_appliance_image(client: Any, bundle_digest: str) -> Any | None:
    """The newest local image labelled with this bundle digest, if any."""
    images = client.images.list(filters={"label": f"{LABEL_DIGEST}={bundle_digest}"})
    if not images:
        return None
    return max(images, key=lambda i: (i.attrs.get("Created", ""), i.id))


def ensure_appliance_image(bundle_dir: Path, manifest: dict[str, Any] | None = None, *,
                           image: str | None = None, client: Any = None,
                           progress: Progress | None = None) -> str:
    """The ID of the local appliance image for this bundle.

    With `image` (--image), that image; it must not carry a different bundle's digest label.
    Without, the newest local image labelled dev.bootpack.bundle.digest=<bundle digest>.
    """
    if manifest is None:
        from ..bundle.manifest import read_manifest

        manifest = read_manifest(bundle_dir)
    client = client or docker_client()
    digest = str(manifest["digest"])
    if image is not None:
        found = _local_image(client, image)
        label = (found.labels or {}).get(LABEL_DIGEST)
        if label is not None and label != digest:
            raise BootpackError(f"--image {image} serves bundle {label}, not {bundle_dir} ({digest}); "
                                "bake this bundle with `bootpack image`")
        return str(found.id)
    found = find_appliance_image(client, digest)
    if found is not None:
        return str(found.id)
    # None baked yet: bake one now, so `bootpack push SPEC REF` is the whole release step.
    from ..appliance.image import bake_image

    tag = f"bootpack/{manifest['name']}:{manifest['version']}"
    (progress or Progress(NORMAL)).info(
        f"no local appliance image for bundle {manifest['name']} {manifest['version']}; "
        f"baking {tag} (skip with --no-image)")
    return bake_image(bundle_dir, tag, progress=progress, client=client).id


def same_image(remote: Manifest, image_id: str, repo_digests: list[str]) -> bool:
    """Whether the registry's manifest is this local image (same config, or pushed from it)."""
    config = (remote.data.get("config") or {}).get("digest")
    return image_id in (config, remote.digest) or any(d.endswith("@" + remote.digest)
                                                        for d in repo_digests)


def check_image_tag(existing: Manifest | None, ref: Reference, client: Any, image_id: str,
                    force: bool) -> bool:
    """Whether the image must be pushed to ref: False if already there, error on a conflict."""
    if existing is None:
        return True
    image = client.images.get(image_id)
    if same_image(existing, image_id, list(image.attrs.get("RepoDigests") or [])):
        return False
    if force:
        return True
    raise BootpackError(f"{ref} already holds another image ({existing.digest}); published versions "
                        "are immutable: bump [bundle] version, or pass --force to replace it")


def push_image(client: Any, image_id: str, ref: Reference, progress: Progress | None = None) -> str:
    """Tag the local image as ref and push it; returns the manifest digest the registry stored."""
    import docker.errors

    progress = progress or Progress(NORMAL)
    assert ref.tag
    image = client.images.get(image_id)
    image.tag(ref.name, tag=ref.tag)
    digest = None
    try:
        for line in client.api.push(ref.name, tag=ref.tag, stream=True, decode=True):
            if "error" in line or "errorDetail" in line:
                raise BootpackError(_push_error(ref, str(line.get("error") or line.get("errorDetail"))))
            aux = line.get("aux") or {}
            if aux.get("Digest"):
                digest = str(aux["Digest"])
            if line.get("status") and progress.level > NORMAL:
                progress.detail(f"{line.get('id', '')} {line['status']}".strip())
    except docker.errors.APIError as exc:
        raise BootpackError(_push_error(ref, str(exc.explanation or exc))) from None
    if digest is None:
        raise BootpackError(f"{ref}: the Docker engine finished the push without reporting a digest")
    return digest


def _push_error(ref: Reference, message: str) -> str:
    low = message.lower()
    if "unauthorized" in low or "authentication required" in low or "no basic auth" in low:
        hint = f"; run `docker login {ref.registry}`"
    elif "connection refused" in low or "no such host" in low or "dial tcp" in low:
        hint = "; check the registry host and port"
    elif "server gave http response to https client" in low:
        hint = (f"; the registry is plain HTTP: add {ref.registry} to the engine's "
                "insecure-registries (daemon.json)")
    else:
        hint = ""
    return f"{ref}: the Docker engine could not push the appliance image: {message}{hint}"
