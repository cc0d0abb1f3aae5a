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

__all__ = ["docker_client", "export_tree", "read_file", "remove_quietly", "resolve_image"]


def _pull(client: docker.DockerClient, ref: str, where: str, progress: Progress) -> str:
    progress.detail(f"docker pull {ref}")
    try:
        image = client.images.pull(ref)
    except docker.errors.DockerException as exc:
        raise BootpackError(f"{where}: image {ref!r} is not available locally and could not be "
                            f"pulled ({exc}); build or load it first (docker build/load), or use "
                            "`dockerfile =` instead") from None
    return str(image.id)


def image_from_ref(client: docker.DockerClient, ref: str, where: str, progress: Progress = SILENT) -> str:
    try:
        return str(client.images.get(ref).id)
    except docker.errors.ImageNotFound:
        return _pull(client, ref, where, progress)
    except docker.errors.DockerException as exc:
        raise BootpackError(f"{where}: cannot inspect image {ref!r}: {exc}") from None


def build_dockerfile(client: docker.DockerClient, dockerfile: Path, tag: str, where: str,
                     progress: Progress = SILENT) -> str:
    """`docker build` with the Dockerfile's folder as context; returns the image id."""
    progress.detail(f"$ docker build --rm --tag {tag} --file {dockerfile.name} {dockerfile.parent}")
    image_id: str | None = None
    log: list[str] = []
    try:
        for chunk in client.api.build(path=str(dockerfile.parent), dockerfile=dockerfile.name,
                                      tag=tag, rm=True, forcerm=True, decode=True):
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
                  progress: Progress = SILENT) -> str:
    """Image id for a spec image's `from` or `dockerfile`."""
    if ref is not None:
        return image_from_ref(client, ref, where, progress)
    assert dockerfile is not None
    return build_dockerfile(client, dockerfile, tag, where, progress)


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
