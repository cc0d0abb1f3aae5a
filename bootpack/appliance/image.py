"""`bootpack image`: bake a bundle into an appliance image with the Docker SDK.

The build context is assembled in a temporary folder: the Dockerfile shipped in this package,
bootpack and its dependencies as wheels (built here with pip, so the image build needs no package
index) and the bundle directory. The image carries OCI annotations as labels: title and version
from the bundle, created from SOURCE_DATE_EPOCH, and the bundle digest.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import docker.errors

from .. import __version__
from ..bundle.archive import source_date_epoch
from ..bundle.manifest import BOOTPACK_VERSION_KEY, DIGEST_KEY, Bundle, BundleManifest
from ..errors import BootpackError
from ..external import docker_client, run
from ..files import walk
from ..images.baseimage import DEFAULT_TAG, ensure_debian_image
from ..progress import NORMAL, Progress

PACKAGE = Path(__file__).resolve().parents[1]  # the bootpack package, as installed
DOCKERFILE = Path(__file__).with_name("Dockerfile")  # package data: works from a plain install


@dataclass(frozen=True)
class ImageResult:
    tag: str
    id: str
    size: int
    labels: dict[str, str]


def image_labels(manifest: BundleManifest, epoch: int) -> dict[str, str]:
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "org.opencontainers.image.title": manifest.name,
        "org.opencontainers.image.version": manifest.version,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.description": manifest.description or
        f"bootpack boot appliance for {manifest.name} {manifest.version}",
        DIGEST_KEY: manifest.digest,
        BOOTPACK_VERSION_KEY: manifest.bootpack_version,
    }


GENERIC_LABEL = "dev.bootpack.appliance.generic"
GENERIC_NOTE_FILE = "GENERIC-APPLIANCE"  # in /srv/bootpack of the generic image
GENERIC_NOTE = ("This is bootpack's generic appliance image: it holds no bundle. Run it with\n"
                "--bundle REGISTRY/REPO:VERSION (or BOOTPACK_BUNDLE_REF) and --verify PUBKEY.\n")


def generic_labels(epoch: int) -> dict[str, str]:
    """Labels of the generic appliance image (no bundle inside: `serve --bundle REF`)."""
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "org.opencontainers.image.title": "bootpack appliance",
        "org.opencontainers.image.version": __version__,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.description": "bootpack boot appliance without a bundle: run it "
        "with --bundle REGISTRY/REPO:VERSION (and --verify PUBKEY)",
        GENERIC_LABEL: "true",
        BOOTPACK_VERSION_KEY: __version__,
    }


def pack_bundle(bundle: Path | None, target: Path) -> None:
    """The bundle as an uncompressed tar that keeps owners, modes and links: the Dockerfile's
    ADD unpacks it as is (COPY would make every file root's, which breaks NFS root trees)."""
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        if bundle is None:  # the generic image: only a note saying how to run it
            note = GENERIC_NOTE.encode()
            info = tarfile.TarInfo(GENERIC_NOTE_FILE)
            info.size, info.mode = len(note), 0o644
            tar.addfile(info, io.BytesIO(note))
            return
        for path in walk(bundle):
            tar.add(path, arcname=path.relative_to(bundle).as_posix(), recursive=False)


def installed_source(target: Path) -> Path:
    """A buildable source tree of the running bootpack, from what is installed.

    Works the same from a checkout and from a plain `pip install`: the package folder as
    imported, a minimal pyproject.toml with this version and the installed distribution's
    runtime requirements (extras left out but `registry`)."""
    shutil.copytree(PACKAGE, target / "bootpack", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # The runtime requirements and the `registry` extra: `serve --bundle REF` pulls in the image.
    requires = [r for r in (metadata.requires("bootpack") or [])
                if "extra ==" not in r or 'extra == "registry"' in r]
    deps = ", ".join(json.dumps(r.split(";")[0].strip()) for r in requires)
    (target / "pyproject.toml").write_text(f"""[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "bootpack"
version = "{__version__}"
requires-python = ">=3.11"
dependencies = [{deps}]

[project.scripts]
bootpack = "bootpack.cli:main"

[tool.setuptools.packages.find]
include = ["bootpack*"]

[tool.setuptools.package-data]
bootpack = ["py.typed", "appliance/Dockerfile", "appliance/dashboard.html"]
""")
    return target


def build_wheels(target: Path, progress: Progress) -> None:
    """bootpack's wheel in target/bootpack, its dependencies' wheels in target/deps."""
    own, deps = target / "bootpack", target / "deps"
    source = installed_source(target / "source")
    for command in (
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(own), str(source)],
        [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(deps), str(source)],
    ):
        run(command, progress=progress, what="pip wheel")
    for wheel in deps.glob("bootpack-*.whl"):
        wheel.unlink()


def bake_image(bundle: Bundle | None, tag: str, *, base: str = DEFAULT_TAG, progress: Progress | None = None,
               client: docker.DockerClient | None = None) -> ImageResult:
    """Build the appliance image for a bundle, or with bundle=None the generic appliance image
    that pulls its bundle at start (`serve --bundle REF`)."""
    progress = progress or Progress(NORMAL)
    client = client or docker_client()
    if base == DEFAULT_TAG:
        with progress.step(f"Making sure {base} exists"):
            ensure_debian_image(base, client=client)
    epoch = source_date_epoch()
    labels = image_labels(bundle.manifest, epoch) if bundle is not None else generic_labels(epoch)
    with tempfile.TemporaryDirectory(prefix="bootpack-image-") as tmp:
        context = Path(tmp)
        shutil.copyfile(DOCKERFILE, context / "Dockerfile")
        with progress.step("Building wheels of bootpack and its dependencies"):
            build_wheels(context / "wheels", progress)
        with progress.step("Packing the bundle into the build context"):
            pack_bundle(bundle.directory if bundle is not None else None, context / "bundle.tar")
        with progress.step(f"Building image {tag}"):
            try:
                image, logs = client.images.build(
                    path=str(context), tag=tag, labels=labels, buildargs={"BASE": base}, rm=True,
                    forcerm=True)
            except docker.errors.BuildError as exc:
                tail = "".join(str(line.get("stream", line.get("error", ""))) for line in exc.build_log)
                raise BootpackError(f"building {tag} failed: {exc.msg}\n{tail[-3000:]}") from None
            except docker.errors.APIError as exc:
                raise BootpackError(f"building {tag} failed: {exc}") from None
            for line in logs:
                text = str(line.get("stream", "")).rstrip()
                if text:
                    progress.detail(text)
    return ImageResult(tag=tag, id=str(image.id), size=int(image.attrs.get("Size", 0)), labels=labels)
