"""Container images as the source of a root tree, through the Docker SDK.

`resolve_image` turns `from = "REF"` (local, else pulled) or `dockerfile = "PATH"` (built, context =
its folder) into an image id, which is what the cache keys on: the same image id means the same
root tree. `read_file` reads one file out of an image without running it; `export_tree` unpacks a
container's file system into a host folder keeping numeric owners and modes.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from pathlib import Path
from typing import Any

import docker
import docker.errors

from ..errors import BootpackError
from ..external import docker_client, run_fed
from ..progress import SILENT, Progress
from ..spec.model import Architecture, build_host_architecture

__all__ = ["docker_client", "export_tree", "need_emulation", "read_file", "remove_quietly",
           "resolve_image"]

# Docker's name for each architecture (the image config's "Architecture", --platform linux/X).
DOCKER_ARCH: dict[Architecture, str] = {"x86_64": "amd64", "arm64": "arm64"}
# binfmt_misc entry Debian's qemu-user-static registers for each architecture (binfmt-support).
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_ENTRY: dict[Architecture, str] = {"x86_64": "qemu-x86_64", "arm64": "qemu-aarch64"}


def need_emulation(architecture: Architecture, where: str) -> None:
    """An image for another CPU than this machine's runs its RUN steps and dracut through
    binfmt_misc and qemu-user: say what is missing before Docker fails obscurely."""
    if architecture == build_host_architecture():
        return
    entry = BINFMT / BINFMT_ENTRY[architecture]
    try:
        enabled = entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if not enabled:
        raise BootpackError(
            f"{where}: architecture = {architecture!r} is not this machine's "
            f"({build_host_architecture()}), and binfmt_misc has no enabled {entry.name} entry, "
            "so the image's programs cannot run here; install Debian's qemu-user-static and "
            f"binfmt-support (apt-get install qemu-user-static binfmt-support; then "
            f"update-binfmts --enable {entry.name}), or run scripts/install")


def check_architecture(client: docker.DockerClient, image_id: str, architecture: Architecture,
                       where: str) -> None:
    """The image is built for the spec's architecture (a `from` image may be another's)."""
    found = str(client.images.get(image_id).attrs.get("Architecture", ""))
    if found and found != DOCKER_ARCH[architecture]:
        raise BootpackError(
            f"{where}: the container image is for {found}, but architecture = {architecture!r}; "
            f"use an image built for linux/{DOCKER_ARCH[architecture]} (e.g. "
            f"`docker build --platform linux/{DOCKER_ARCH[architecture]}`), or set "
            "architecture to the image's")


def _pull(client: docker.DockerClient, ref: str, where: str, progress: Progress,
          platform: str) -> str:
    progress.detail(f"docker pull --platform {platform} {ref}")
    try:
        image = client.images.pull(ref, platform=platform)
    except docker.errors.DockerException as exc:
        raise BootpackError(f"{where}: image {ref!r} is not available locally and could not be "
                            f"pulled ({exc}); build or load it first (docker build/load), or use "
                            "`dockerfile =` instead") from None
    return str(image.id)


def image_from_ref(client: docker.DockerClient, ref: str, where: str, progress: Progress = SILENT,
                   architecture: Architecture = "x86_64") -> str:
    try:
        return str(client.images.get(ref).id)
    except docker.errors.ImageNotFound:
        return _pull(client, ref, where, progress, f"linux/{DOCKER_ARCH[architecture]}")
    except docker.errors.DockerException as exc:
        raise BootpackError(f"{where}: cannot inspect image {ref!r}: {exc}") from None


def build_dockerfile(client: docker.DockerClient, dockerfile: Path, tag: str, where: str,
                     architecture: Architecture = "x86_64", progress: Progress = SILENT) -> str:
    """`docker build` with the Dockerfile's folder as context; returns the image id."""
    platform = f"linux/{DOCKER_ARCH[architecture]}"
    progress.detail(f"$ docker build --rm --platform {platform} --tag {tag} --file "
                    f"{dockerfile.name} {dockerfile.parent}")
    image_id: str | None = None
    log: list[str] = []
    try:
        for chunk in client.api.build(path=str(dockerfile.parent), dockerfile=dockerfile.name,
                                      tag=tag, rm=True, forcerm=True, decode=True,
                                      platform=platform):
            if "stream" in chunk:
                for line in str(chunk["stream"]).splitlines():
                    if line.strip():
                        log.append(line)
                        progress.detail(line)
            if "error" in chunk:
                tail = "\n".join(log[-20:])
                raise BootpackError(f"{where}: docker build of {dockerfile} failed: "
                                    f"{chunk['error'].strip()}\n{tail}")
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    except docker.errors.DockerException as exc:
        raise BootpackError(f"{where}: docker build of {dockerfile} failed: {exc}") from None
    if image_id is None:
        image_id = str(client.images.get(tag).id)
    return image_id


def resolve_image(client: docker.DockerClient, *, where: str, ref: str | None = None,
                  dockerfile: Path | None = None, tag: str = "bootpack-image:latest",
                  architecture: Architecture = "x86_64", progress: Progress = SILENT) -> str:
    """Image id for a spec image's `from` or `dockerfile`, built for `architecture`."""
    if ref is not None:
        image_id = image_from_ref(client, ref, where, progress, architecture)
    else:
        assert dockerfile is not None
        image_id = build_dockerfile(client, dockerfile, tag, where, architecture, progress)
    check_architecture(client, image_id, architecture, where)
    return image_id


def remove_quietly(container: Any) -> None:
    with contextlib.suppress(docker.errors.DockerException):
        container.remove(force=True)


def _archive_member(container: Any, path: str) -> tuple[tarfile.TarInfo, bytes] | None:
    try:
        stream, _stat = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmembers()[0]
        content = tar.extractfile(member) if member.isreg() else None
        return member, content.read() if content else b""


def read_file(client: docker.DockerClient, image_id: str, paths: tuple[str, ...]) -> str | None:
    """Text of the first of `paths` that is a regular file in the image (symlinks followed once)."""
    container = client.containers.create(image_id, command=["/bin/true"], entrypoint=[])
    try:
        for path in paths:
            found = _archive_member(container, path)
            if found is None:
                continue
            member, content = found
            if member.issym():
                target = member.linkname
                if not target.startswith("/"):
                    target = str(Path(path).parent / target)
                found = _archive_member(container, target)
                if found is None or not found[0].isreg():
                    continue
                content = found[1]
            elif not member.isreg():
                continue
            return content.decode(errors="replace")
        return None
    finally:
        remove_quietly(container)


def export_tree(container: Any, target: Path, progress: Progress = SILENT) -> None:
    """Unpack a (stopped) container's whole file system into target, numeric owners kept."""
    target.mkdir(parents=True, exist_ok=True)
    run_fed(["tar", "--extract", "--preserve-permissions", "--numeric-owner", "--file", "-",
             "--directory", target], container.export(chunk_size=1 << 20), progress=progress,
            what="unpacking the container's file system")
