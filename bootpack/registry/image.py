"""The appliance image of a bundle: find it locally, push it with the Docker SDK.

The Docker engine does the image push (layers, its own credentials from the X-Registry-Auth
header the SDK builds from Docker's config and credential helpers). Whether the engine talks
HTTPS or plain HTTP to a registry is the engine's decision: 127.0.0.0/8 is plain HTTP by default,
other plain-HTTP registries must be listed in the engine's `insecure-registries`.

Which image serves a bundle, and baking one when there is none, is the release workflow's
decision (bootpack.release); this module only finds, checks and pushes.

A multi-platform appliance is one image per platform pushed by the engine, then an index over
them that bootpack writes itself (Docker 20.10 without buildx cannot): a Docker manifest list
over the engine's Docker manifests (an OCI index over OCI ones), each entry's platform read
from the pushed image's own config, so the index cannot claim an architecture its image lacks.
"""

from __future__ import annotations

import json
from typing import Any

from ..bundle.manifest import DIGEST_KEY
from ..errors import BootpackError
from ..external import docker_client as engine
from ..progress import NORMAL, Progress
from .auth import RegistryError
from .client import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Manifest, RegistryClient
from .reference import Reference

# The index type that lists manifests of each type (the two formats are not mixed).
INDEX_FOR: dict[str, str] = {DOCKER_MANIFEST: DOCKER_LIST, OCI_MANIFEST: OCI_INDEX}
# What a registry answers when it does not take a manifest of this type.
_REFUSED = ("HTTP 400", "HTTP 415", "MANIFEST_INVALID", "UNSUPPORTED")


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


def find_appliance_image(client: Any, bundle_digest: str, architecture: str | None = None) -> Any | None:
    """The newest local image labelled with this bundle digest, if any; with architecture
    (Docker's name: amd64, arm64), only an image built for it (`bootpack image --platform`
    leaves one per platform)."""
    images = client.images.list(filters={"label": f"{DIGEST_KEY}={bundle_digest}"})
    if architecture is not None:
        images = [i for i in images if i.attrs.get("Architecture") == architecture]
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


def platform_entry(client: RegistryClient, ref: Reference, digest: str) -> dict[str, Any]:
    """The index entry of the image manifest ref@digest: type, digest, size and the platform
    its config declares."""
    found = client.get_manifest_raw(ref.with_digest(digest))
    if found is None:
        raise RegistryError(f"{ref.with_digest(digest)}: the pushed image is missing from the registry")
    if found.media_type not in INDEX_FOR:
        raise RegistryError(f"{ref.with_digest(digest)}: a {found.media_type or 'untyped'} manifest "
                            "cannot be listed in a multi-platform index")
    config_digest = str((found.data.get("config") or {}).get("digest", ""))
    config = client.fetch_json_blob(ref, config_digest)
    platform = {"architecture": str(config.get("architecture", "")), "os": str(config.get("os", ""))}
    if config.get("variant"):
        platform["variant"] = str(config["variant"])
    if not platform["architecture"] or not platform["os"]:
        raise RegistryError(f"{ref.with_digest(digest)}: the image config names no architecture/os")
    return {"mediaType": found.media_type, "digest": found.digest, "size": len(found.raw),
            "platform": platform}


def push_platform_index(client: RegistryClient, ref: Reference, digests: list[str]) -> str:
    """Store at ref an index over the image manifests digests (already in ref's repository);
    returns the index digest. A registry that refuses the index type gets a clear error."""
    entries = [platform_entry(client, ref, d) for d in digests]
    types = {e["mediaType"] for e in entries}
    if len(types) != 1:
        raise RegistryError(f"{ref}: the per-platform images mix manifest types "
                            f"({', '.join(sorted(types))}); push them from one Docker engine")
    media_type = INDEX_FOR[types.pop()]
    raw = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries},
                     indent=2).encode()
    try:
        return client.put_manifest(ref, raw, media_type)
    except RegistryError as exc:
        if not any(marker in str(exc) for marker in _REFUSED):
            raise
        raise RegistryError(
            f"{ref}: the registry refused the multi-platform index ({media_type}): {exc}; the "
            "per-platform images are pushed (" + ", ".join(e["digest"] for e in entries) + "); use a "
            "registry that accepts image indexes, or publish one --platform per tag") from None
