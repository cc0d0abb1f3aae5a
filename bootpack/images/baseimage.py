"""Create a Debian base image locally, for sites (and CI) that cannot pull from a registry.

`mmdebstrap --variant=minbase` makes a root tarball from Debian's package mirror (or a local
mirror, via --mirror), which `docker import` turns into an image such as debian:bookworm-slim.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import docker
import docker.errors

from ..errors import BootpackError
from ..external import docker_client, run

DEFAULT_TAG = "debian:bookworm-slim"


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_debian_image(tag: str = DEFAULT_TAG, suite: str = "bookworm", mirror: str | None = None,
                        client: docker.DockerClient | None = None) -> str:
    """Make sure `tag` exists locally; build it with mmdebstrap + import when it does not.

    Returns the image id.
    """
    client = client or docker_client()
    if image_exists(client, tag):
        return str(client.images.get(tag).id)
    if shutil.which("mmdebstrap") is None:
        raise BootpackError(f"{tag} is not available locally and mmdebstrap is missing; "
                            "install it (apt-get install mmdebstrap) or load the image")
    with tempfile.TemporaryDirectory(prefix="bootpack-base-") as tmp:
        tarball = Path(tmp) / "base.tar"
        command = ["mmdebstrap", "--variant=minbase", "--format=tar", suite, str(tarball)]
        if mirror:
            command.append(mirror)
        run(command, what=f"mmdebstrap (building {tag})")
        repository, _, version = tag.partition(":")
        # Given a file name, the SDK uploads the tarball like `docker import`.
        client.api.import_image(src=str(tarball), repository=repository, tag=version or "latest")
    return str(client.images.get(tag).id)


if __name__ == "__main__":  # python -m bootpack.images.baseimage [TAG]
    import sys

    print(ensure_debian_image(*(sys.argv[1:2] or [DEFAULT_TAG])))
