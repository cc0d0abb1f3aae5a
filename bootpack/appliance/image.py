"""`bootpack image`: bake a bundle into an appliance image with the Docker SDK.

The build context is assembled in a temporary folder: the Dockerfile shipped in this package,
bootpack and its dependencies as wheels (built here with pip, so the image build needs no package
index) and the bundle directory. The image carries OCI annotations as labels: title and version
from the bundle, created from SOURCE_DATE_EPOCH, and the bundle digest.

An image for another CPU (`--platform linux/arm64` on an x86-64 machine) is built by the same
classic builder with its RUN steps under binfmt_misc + qemu-user, from the base image of that
architecture; the compiled dependencies (pydantic-core, cryptography, ...) are that platform's
binary wheels of the very versions built here, downloaded with `pip download --platform`.
"""

from __future__ import annotations

import io
import json
import re
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
from ..images.baseimage import DEFAULT_TAGS, ensure_debian_image
from ..images.docker_image import DOCKER_ARCH, check_architecture, need_emulation
from ..progress import NORMAL, Progress
from ..spec.model import ARCHITECTURES, Architecture, build_host_architecture

PACKAGE = Path(__file__).resolve().parents[1]  # the bootpack package, as installed
DOCKERFILE = Path(__file__).with_name("Dockerfile")  # package data: works from a plain install


# The appliance's Python: Debian 12's python3, which the Dockerfile's venv uses. Foreign wheels are
# fetched for it (the host's own wheels are built by the host's Python, 3.11 too on Debian 12).
APPLIANCE_PYTHON = "3.11"
# Debian 12's glibc is 2.36: any manylinux wheel up to that runs in the appliance. pip matches
# --platform exactly (no expansion from manylinux_2_36 down), so every level is named.
_GLIBC_MINORS = range(36, 16, -1)
_WHEEL_MACHINE: dict[Architecture, str] = {"x86_64": "x86_64", "arm64": "aarch64"}
# A wheel file name: NAME-VERSION(-BUILD)?-PYTHON-ABI-PLATFORM.whl (PEP 427).
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-(?P<platform>[^-]+)\.whl$")


@dataclass(frozen=True)
class ImageResult:
    tag: str
    id: str
    size: int
    labels: dict[str, str]
    architecture: Architecture


def platform_name(architecture: Architecture) -> str:
    """Docker's --platform for an architecture: linux/amd64, linux/arm64."""
    return f"linux/{DOCKER_ARCH[architecture]}"


PLATFORMS: dict[str, Architecture] = {platform_name(a): a for a in ARCHITECTURES}


def parse_platforms(text: str) -> tuple[Architecture, ...]:
    """`--platform linux/amd64,linux/arm64` as architectures, in the order given; ValueError
    naming the culprit and the choices."""
    found: list[Architecture] = []
    for item in text.split(","):
        name = item.strip()
        if name not in PLATFORMS:
            raise ValueError(f"{name!r} is not a platform the appliance is built for; use "
                             f"{' or '.join(PLATFORMS)}, or several separated by commas")
        if PLATFORMS[name] in found:
            raise ValueError(f"{name!r} is given twice")
        found.append(PLATFORMS[name])
    return tuple(found)


def platform_tag(tag: str, architecture: Architecture) -> str:
    """The local (and pushed) tag of one platform's image of a multi-platform build:
    boot:1.0 -> boot:1.0-arm64 (one engine tag holds one image: there is no buildx here)."""
    name, sep, version = tag.rpartition(":")
    if not sep or "/" in version:  # no tag given: Docker's default
        name, version = tag, "latest"
    return f"{name}:{version}-{DOCKER_ARCH[architecture]}"


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


def wheel_platform_args(architecture: Architecture) -> list[str]:
    """pip's --platform, --python-version and --implementation for the appliance's Python."""
    machine = _WHEEL_MACHINE[architecture]
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in _GLIBC_MINORS]
    platforms.append(f"manylinux2014_{machine}")
    return [arg for p in platforms for arg in ("--platform", p)] + [
        "--python-version", APPLIANCE_PYTHON, "--implementation", "cp", "--only-binary=:all:"]


def compiled_wheels(folder: Path) -> dict[Path, str]:
    """The wheels in folder that are not pure Python, each with its NAME==VERSION pin."""
    found: dict[Path, str] = {}
    for wheel in sorted(folder.glob("*.whl")):
        match = _WHEEL.match(wheel.name)
        if match is None:
            raise BootpackError(f"{wheel.name}: not a wheel file name pip would make")
        if match["platform"] != "any":
            found[wheel] = f"{match['name']}=={match['version']}"
    return found


def foreign_wheels(deps: Path, architecture: Architecture, progress: Progress) -> None:
    """Replace the host's compiled wheels in deps by architecture's wheels of the same versions
    (pure-Python wheels run anywhere and stay)."""
    compiled = compiled_wheels(deps)
    if not compiled:
        return
    for wheel in compiled:
        wheel.unlink()
    pins = sorted(compiled.values())
    try:
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(deps),
             *wheel_platform_args(architecture), *pins], progress=progress, what="pip download")
    except BootpackError as exc:
        raise BootpackError(
            f"the appliance for {platform_name(architecture)} needs binary wheels of "
            f"{', '.join(pins)} for {_WHEEL_MACHINE[architecture]} (Python {APPLIANCE_PYTHON}), and "
            f"pip could not download them; check that the package index is reachable (pip's "
            f"index-url or a --find-links folder holding them)\n{exc}") from None


def build_wheels(target: Path, progress: Progress) -> None:
    """bootpack's wheel in target/bootpack, its dependencies' wheels in target/deps (for this
    machine: foreign_wheels swaps the compiled ones for another's)."""
    own, deps = target / "bootpack", target / "deps"
    source = installed_source(target / "source")
    for command in (
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(own), str(source)],
        [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(deps), str(source)],
    ):
        run(command, progress=progress, what="pip wheel")
    for wheel in deps.glob("bootpack-*.whl"):
        wheel.unlink()


def bake_image(bundle: Bundle | None, tag: str, *, base: str | None = None,
               architecture: Architecture | None = None, progress: Progress | None = None,
               client: docker.DockerClient | None = None,
               host_wheels: Path | None = None) -> ImageResult:
    """Build the appliance image for a bundle, or with bundle=None the generic appliance image
    that pulls its bundle at start (`serve --bundle REF`), for architecture (default: this
    machine's; another runs its RUN steps under qemu-user). base defaults to Debian 12 slim of
    that architecture, made locally with mmdebstrap when missing. host_wheels: what
    build_wheels made already (a build for several platforms makes them once)."""
    progress = progress or Progress(NORMAL)
    architecture = architecture or build_host_architecture()
    platform = platform_name(architecture)
    need_emulation(architecture, f"--platform {platform}")
    client = client or docker_client()
    base = base or DEFAULT_TAGS[architecture]
    if base == DEFAULT_TAGS[architecture]:
        with progress.step(f"Making sure {base} exists"):
            ensure_debian_image(base, client=client, architecture=architecture)
    epoch = source_date_epoch()
    labels = image_labels(bundle.manifest, epoch) if bundle is not None else generic_labels(epoch)
    with tempfile.TemporaryDirectory(prefix="bootpack-image-") as tmp:
        context = Path(tmp)
        shutil.copyfile(DOCKERFILE, context / "Dockerfile")
        wheels = context / "wheels"
        if host_wheels is None:
            with progress.step("Building wheels of bootpack and its dependencies"):
                build_wheels(wheels, progress)
        else:
            for part in ("bootpack", "deps"):
                shutil.copytree(host_wheels / part, wheels / part)
        if architecture != build_host_architecture():
            with progress.step(f"Fetching the {platform} wheels of the compiled dependencies"):
                foreign_wheels(wheels / "deps", architecture, progress)
        with progress.step("Packing the bundle into the build context"):
            pack_bundle(bundle.directory if bundle is not None else None, context / "bundle.tar")
        emulated = "" if architecture == build_host_architecture() else " (emulated under qemu-user)"
        with progress.step(f"Building image {tag} for {platform}{emulated}"):
            image_id = _build(client, context, tag, labels, base, platform, progress)
    check_architecture(client, image_id, architecture, f"--base {base}")
    image = client.images.get(image_id)
    return ImageResult(tag=tag, id=image_id, size=int(image.attrs.get("Size", 0)), labels=labels,
                       architecture=architecture)


def _build(client: docker.DockerClient, context: Path, tag: str, labels: dict[str, str], base: str,
           platform: str, progress: Progress) -> str:
    """The classic builder's build, streamed: each Dockerfile step as a progress line as it
    starts (an emulated build runs for minutes), the rest at --verbose. Returns the image id."""
    log: list[str] = []
    image_id: str | None = None
    try:
        for chunk in client.api.build(path=str(context), tag=tag, labels=labels,
                                      buildargs={"BASE": base}, platform=platform, rm=True,
                                      forcerm=True, decode=True):
            if "error" in chunk:
                raise BootpackError(f"building {tag} for {platform} failed: "
                                    f"{str(chunk['error']).strip()}\n" + "\n".join(log[-30:]))
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip():
                    log.append(line)
                    if line.startswith("Step "):  # the step's first line: RUN lines are long
                        progress.info(line if len(line) <= 100 else line[:99] + "…")
                    else:
                        progress.detail(line)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    except docker.errors.APIError as exc:
        raise BootpackError(f"building {tag} for {platform} failed: {exc.explanation or exc}") from None
    except docker.errors.DockerException as exc:
        raise BootpackError(f"building {tag} for {platform} failed: {exc}") from None
    return image_id or str(client.images.get(tag).id)
