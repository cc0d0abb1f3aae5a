"""Create a Debian base image locally, for sites (and CI) that cannot pull from a registry.

`mmdebstrap --variant=minbase` makes a root tarball from Debian's package mirror (or a local
mirror, via --mirror), which `docker import` turns into an image such as debian:bookworm-slim.
For arm64 on an x86-64 machine, mmdebstrap runs the packages' scripts through qemu-user
(binfmt_misc; Debian's qemu-user-static and arch-test) and the image is
arm64v8/debian:bookworm-slim, the name Docker Hub gives Debian's arm64 images.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import docker
import docker.errors

from ..errors import BootpackError
from ..external import docker_client, run
from ..spec.model import Architecture, build_host_architecture
from .docker_image import DOCKER_ARCH, build_dockerfile, need_emulation

DEFAULT_TAG = "debian:bookworm-slim"
DEFAULT_TAGS: dict[Architecture, str] = {"x86_64": DEFAULT_TAG,
                                         "arm64": "arm64v8/debian:bookworm-slim"}


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_debian_image(tag: str = DEFAULT_TAG, suite: str = "bookworm", mirror: str | None = None,
                        client: docker.DockerClient | None = None,
                        architecture: Architecture | None = None) -> str:
    """Make sure `tag` exists locally; build it with mmdebstrap + import when it does not, for
    `architecture` (default: this machine's).

    Returns the image id.
    """
    client = client or docker_client()
    architecture = architecture or build_host_architecture()
    if image_exists(client, tag):
        return str(client.images.get(tag).id)
    if shutil.which("mmdebstrap") is None:
        raise BootpackError(f"{tag} is not available locally and mmdebstrap is missing; "
                            "install it (apt-get install mmdebstrap) or load the image")
    with tempfile.TemporaryDirectory(prefix="bootpack-base-") as tmp:
        tarball = Path(tmp) / "base.tar"
        command = ["mmdebstrap", "--variant=minbase", "--format=tar"]
        if architecture != build_host_architecture():
            need_emulation(architecture, f"the {tag} base image")
            command.append(f"--architectures={DOCKER_ARCH[architecture]}")
        command += [suite, str(tarball)]
        if mirror:
            command.append(mirror)
        run(command, what=f"mmdebstrap (building {tag})")
        # `FROM scratch` + the tarball, built for the platform: unlike `docker import
        # --platform` (Docker 20.10), this records the architecture in the image.
        (Path(tmp) / "Dockerfile").write_text('FROM scratch\nADD base.tar /\nCMD ["bash"]\n')
        build_dockerfile(client, Path(tmp) / "Dockerfile", tag, f"the {tag} base image",
                         architecture)
    return str(client.images.get(tag).id)


if __name__ == "__main__":  # python -m bootpack.images.baseimage [TAG]
    import sys

    # python -m bootpack.images.baseimage [TAG [arm64]]
    arch: Architecture | None = "arm64" if sys.argv[2:3] == ["arm64"] else None
    print(ensure_debian_image(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_TAG, architecture=arch))
