"""The appliance image of a bundle: find it locally, push it with the Docker SDK.

The Docker engine does the image push (layers, its own credentials from the X-Registry-Auth
header the SDK builds from Docker's config and credential helpers). Whether the engine talks
HTTPS or plain HTTP to a registry is the engine's decision: 127.0.0.0/8 is plain HTTP by default,
other plain-HTTP registries must be listed in the engine's `insecure-registries`.

Which image serves a bundle, and baking one when there is none, is the release workflow's
decision (bootpack.release); this module only finds, checks and pushes.
"""

from __future__ import annotations

from typing import Any

from ..bundle.manifest import DIGEST_KEY
from ..errors import BootpackError
from ..external import docker_client as engine
from ..progress import NORMAL, Progress
from .client import Manifest
from .reference import Reference


def docker_client() -> Any:
    try:
        return engine()
    except BootpackError as exc:
        raise BootpackError(f"{exc}, or push only the bundle with --no-image") from None


def local_image(client: Any, name: str) -> Any:
    import docker.errors

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        raise BootpackError(f"--image {name}: no such image in the local Docker engine") from None
    except docker.errors.APIError as exc:
        raise BootpackError(f"--image {name}: {exc.explanation or exc}") from None


def find_appliance_image(client: Any, bundle_digest: str) -> Any | None:
    """The newest local image labelled with this bundle digest, if any."""
    images = client.images.list(filters={"label": f"{DIGEST_KEY}={bundle_digest}"})
    if not images:
        return None
    return max(images, key=lambda i: (i.attrs.get("Created", ""), i.id))


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
