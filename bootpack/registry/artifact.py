"""A bundle as an OCI artifact: push, pull (verified, atomic) and inspect.

The artifact is an OCI image manifest (OCI 1.1 artifact guidance):

    artifactType  application/vnd.bootpack.bundle.v1
    config        the empty descriptor (application/vnd.oci.empty.v1+json, `{}`)
    layers[0]     the bundle's deterministic archive, application/vnd.bootpack.bundle.layer.v1.tar+gzip,
                  titled NAME-VERSION.tar.gz (so `oras pull` writes a sensible file name)
    annotations   dev.bootpack.bundle.{name,version,digest}, org.opencontainers.image.{title,version,
                  created}, dev.bootpack.version

The bundle digest (bundle.json's `digest`, over every file's sha256) is the bundle's identity:
pushing a version whose tag already holds that digest is a no-op; a different digest is refused
unless --force.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..bundle import layout
from ..bundle.archive import extract_archive, write_archive
from ..bundle.manifest import bundle_digest, read_manifest, verify
from ..bundle.output import archive_path, staged_output
from ..errors import BootpackError
from ..progress import NORMAL, Progress
from .client import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    Manifest,
    RegistryClient,
    RegistryError,
    sha256_file,
)
from .reference import APPLIANCE_SUFFIX, LATEST, Reference, check_version_tag

ARTIFACT_TYPE = "application/vnd.bootpack.bundle.v1"
LAYER_TYPE = "application/vnd.bootpack.bundle.layer.v1.tar+gzip"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"

A_NAME = "dev.bootpack.bundle.name"
A_VERSION = "dev.bootpack.bundle.version"
A_DIGEST = "dev.bootpack.bundle.digest"
A_BOOTPACK = "dev.bootpack.version"
A_CREATED = "org.opencontainers.image.created"
A_TITLE = "org.opencontainers.image.title"
A_OCI_VERSION = "org.opencontainers.image.version"


@dataclass(frozen=True)
class BundleSource:
    """A verified bundle ready to publish: its directory, archive and manifest."""

    directory: Path
    archive: Path
    manifest: dict[str, Any]
    archive_digest: str
    archive_size: int

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])


@dataclass(frozen=True)
class PushResult:
    ref: Reference  # with the version tag
    digest: str  # manifest digest
    pushed: bool  # False: the registry already held this bundle under this version


@dataclass(frozen=True)
class PullResult:
    ref: Reference
    manifest_digest: str
    bundle_digest: str
    output: Path
    archive: Path
    files: int
    size: int


# -- the bundle on disk -------------------------------------------------------------------------


def archive_manifest(archive: Path) -> dict[str, Any]:
    """Read bundle.json from an archive and check every file in it, in one streaming pass."""
    import hashlib

    rows: dict[str, dict[str, Any]] = {}
    manifest: dict[str, Any] | None = None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            prefix = None
            for member in tar:
                if prefix is None:
                    if not member.isdir():
                        raise BootpackError(f"{archive}: not a bootpack archive")
                    prefix = member.name + "/"
                    continue
                rel = member.name.removeprefix(prefix)
                if member.issym():
                    rows[rel] = {"path": rel, "link": member.linkname}
                elif member.isreg():
                    f = tar.extractfile(member)
                    assert f is not None
                    if rel == layout.MANIFEST:
                        manifest = json.loads(f.read())
                        continue
                    h = hashlib.sha256()
                    while block := f.read(1 << 20):
                        h.update(block)
                    rows[rel] = {"path": rel, "sha256": "sha256:" + h.hexdigest(), "size": member.size}
    except (OSError, tarfile.TarError, EOFError, ValueError) as exc:
        raise BootpackError(f"{archive}: unreadable archive: {exc}") from None
    if manifest is None:
        raise BootpackError(f"{archive}: no {layout.MANIFEST} inside; not a bootpack archive")
    want = {row["path"]: row for row in manifest.get("files", [])}
    if want != rows:
        raise BootpackError(f"{archive}: its files do not match its {layout.MANIFEST}")
    _check_manifest_digest(manifest, str(archive))
    return manifest


def _check_manifest_digest(manifest: dict[str, Any], where: str) -> None:
    try:
        computed = bundle_digest(manifest["name"], manifest["version"], manifest["files"])
    except (KeyError, TypeError):
        raise BootpackError(f"{where}: {layout.MANIFEST} lacks name, version or files") from None
    if computed != manifest.get("digest"):
        raise BootpackError(f"{where}: {layout.MANIFEST} says digest {manifest.get('digest')} but its "
                            f"files add up to {computed}")


def open_bundle(path: Path, workdir: Path, progress: Progress) -> BundleSource:
    """SPEC (built into workdir) or BUNDLE_DIR (verified) -> a bundle with a verified archive.

    An existing BUNDLE_DIR.tar.gz is used when it holds exactly this bundle; otherwise the
    deterministic archive is written again into workdir (same files, same bytes for the same
    SOURCE_DATE_EPOCH).
    """
    if path.is_file():
        from ..compiler import build_bundle
        from ..spec import load_spec

        loaded = load_spec(path)
        check_version_tag(loaded.spec.bundle.version)  # before a possibly long build
        result = build_bundle(loaded, workdir / loaded.spec.bundle.name, progress=progress)
        directory, archive = result.output, result.archive
        manifest = read_manifest(directory)
    elif path.is_dir():
        directory = path.absolute()
        manifest = read_manifest(directory)
        archive = archive_path(directory)
        usable = False
        if archive.is_file():
            with progress.step(f"Checking {archive.name}"):
                try:
                    usable = archive_manifest(archive).get("digest") == manifest.get("digest")
                except BootpackError as exc:
                    progress.warn(f"{exc}; writing the archive again")
        if not usable:
            with progress.step(f"Checking {directory.name} against its {layout.MANIFEST}"):
                problems = verify(directory)
                if problems:
                    raise BootpackError(f"{directory}: the bundle does not match its "
                                        f"{layout.MANIFEST}: " + ", ".join(problems[:5]) +
                                        (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
                                        + "; rebuild it with `bootpack build`")
                _check_manifest_digest(manifest, str(directory / layout.MANIFEST))
            archive = workdir / f"{manifest['name']}-{manifest['version']}.tar.gz"
            with progress.step(f"Writing {archive.name}"):
                write_archive(directory, archive, f"{manifest['name']}-{manifest['version']}")
    elif path.exists():
        raise BootpackError(f"{path}: neither a spec file nor a bundle directory")
    else:
        raise BootpackError(f"{path}: no such spec file or bundle directory")
    check_version_tag(str(manifest["version"]))
    digest, size = sha256_file(archive)
    return BundleSource(directory=directory, archive=archive, manifest=manifest,
                        archive_digest=digest, archive_size=size)


# -- push ---------------------------------------------------------------------------------------


def is_bundle_manifest(m: Manifest) -> bool:
    return m.data.get("artifactType") == ARTIFACT_TYPE or (
        (m.data.get("config") or {}).get("mediaType") == ARTIFACT_TYPE)


def bundle_manifest_bytes(bundle: BundleSource, created: str) -> bytes:
    """The artifact's manifest, serialized once so its digest is known before upload."""
    from .client import sha256_bytes

    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256_bytes(EMPTY_DATA), "size": len(EMPTY_DATA),
                   "data": "e30="},
        "layers": [{
            "mediaType": LAYER_TYPE,
            "digest": bundle.archive_digest,
            "size": bundle.archive_size,
            "annotations": {A_TITLE: f"{bundle.name}-{bundle.version}.tar.gz"},
        }],
        "annotations": {
            A_NAME: bundle.name,
            A_VERSION: bundle.version,
            A_DIGEST: bundle.digest,
            A_BOOTPACK: __version__,
            A_TITLE: bundle.name,
            A_OCI_VERSION: bundle.version,
            A_CREATED: created,
        },
    }
    return json.dumps(manifest, indent=2, sort_keys=False).encode() + b"\n"


def check_bundle_tag(existing: Manifest | None, ref: Reference, bundle: BundleSource,
                     force: bool) -> bool:
    """Whether the bundle must be pushed to ref: False if already there, error on a conflict."""
    if existing is None:
        return True
    if is_bundle_manifest(existing):
        have = existing.annotations.get(A_DIGEST)
        if have == bundle.digest:
            return False
        what = f"bundle {have} (pushed {existing.annotations.get(A_CREATED, 'at an unknown time')})"
    else:
        what = f"something that is not a bootpack bundle ({existing.media_type})"
    if force:
        return True
    raise BootpackError(f"{ref} already holds {what}; published versions are immutable: bump "
                        f"[bundle] version (this bundle is {bundle.digest}), or pass --force to "
                        "replace it")


def push_bundle(client: RegistryClient, repo: Reference, bundle: BundleSource, *, force: bool = False,
                progress: Progress | None = None, existing: Manifest | None = None,
                checked: bool = False) -> PushResult:
    """Publish the bundle at repo:VERSION and move repo:latest to it.

    With checked=True the caller already looked at the version tag (existing) and decided.
    """
    progress = progress or Progress(NORMAL)
    ref = repo.with_tag(bundle.version)
    if not checked:
        existing = client.get_manifest_raw(ref)
    if not check_bundle_tag(existing, ref, bundle, force):
        assert existing is not None
        if client.get_manifest_raw(repo.with_tag(LATEST)) is None:
            client.put_manifest(repo.with_tag(LATEST), existing.raw)
        return PushResult(ref=ref, digest=existing.digest, pushed=False)
    with progress.step(f"Uploading {bundle.archive.name} ({bundle.archive_size / 1e6:.1f} MB)"):
        client.push_blob(repo, bundle.archive, bundle.archive_digest, bundle.archive_size)
        client.push_bytes(repo, EMPTY_DATA)
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    raw = bundle_manifest_bytes(bundle, created)
    digest = client.put_manifest(ref, raw)
    client.put_manifest(repo.with_tag(LATEST), raw)
    return PushResult(ref=ref, digest=digest, pushed=True)


# -- pull ---------------------------------------------------------------------------------------


def resolve_bundle(client: RegistryClient, ref: Reference) -> tuple[Manifest, dict[str, Any]]:
    """The bundle manifest at ref and its archive layer descriptor, or a clear error."""
    m = client.get_manifest_raw(ref)
    if m is None:
        what = "digest" if ref.digest else "tag"
        raise BootpackError(f"{ref}: no such {what} in the registry; `bootpack inspect {ref.name}` "
                            "lists the published versions")
    if not is_bundle_manifest(m):
        hint = (" (that is the appliance image: run it with docker)"
                if (ref.tag or "").endswith(APPLIANCE_SUFFIX) or m.media_type == DOCKER_MANIFEST else "")
        raise BootpackError(f"{ref}: not a bootpack bundle (media type {m.media_type}, artifact type "
                            f"{m.data.get('artifactType')}){hint}")
    layers = [lay for lay in m.data.get("layers") or [] if lay.get("mediaType") == LAYER_TYPE]
    if len(layers) != 1 or not isinstance(layers[0].get("size"), int) or \
            not re.fullmatch(r"sha256:[0-9a-f]{64}", str(layers[0].get("digest"))):
        raise BootpackError(f"{ref}: a bundle manifest must have exactly one {LAYER_TYPE} layer with "
                            "a sha256 digest and a size")
    return m, layers[0]


def pull_bundle(client: RegistryClient, ref: Reference, output: Path,
                progress: Progress | None = None) -> PullResult:
    """Download, verify and atomically install the bundle at ref into output (+ output.tar.gz).

    Order of checks: manifest digest (when pulled by digest), archive blob size and digest,
    then bundle.json against every extracted file, then the bundle digest against the
    manifest's annotation. Any failure leaves output and output.tar.gz as they were.
    """
    progress = progress or Progress(NORMAL)
    m, layer = resolve_bundle(client, ref)
    want = m.annotations.get(A_DIGEST)
    with staged_output(output) as staging:
        archive = archive_path(staging)
        with progress.step(f"Downloading {ref} ({layer['size'] / 1e6:.1f} MB)"):
            client.fetch_blob(ref, layer["digest"], layer["size"], archive)
        with progress.step("Unpacking and verifying every file"):
            try:
                extract_archive(archive, staging)
            except (OSError, tarfile.TarError, EOFError, ValueError) as exc:
                raise BootpackError(f"{ref}: cannot unpack the bundle archive: {exc}") from None
            problems = verify(staging)
            if problems:
                raise BootpackError(f"{ref}: the bundle does not match its {layout.MANIFEST}: "
                                    + ", ".join(problems[:5]))
            manifest = read_manifest(staging)
            _check_manifest_digest(manifest, f"{ref}")
        if want and manifest["digest"] != want:
            raise RegistryError(f"{ref}: the archive holds bundle {manifest['digest']} but the manifest "
                                f"announces {want}")
    out = output.absolute()
    size = sum(row.get("size", 0) for row in manifest["files"])
    return PullResult(ref=ref, manifest_digest=m.digest, bundle_digest=manifest["digest"], output=out,
                      archive=archive_path(out), files=len(manifest["files"]), size=size)


# -- inspect ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    tag: str
    kind: str  # bundle | appliance | other
    digest: str  # manifest digest
    version: str | None
    bundle_digest: str | None
    created: str | None
    size: int | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _seconds(timestamp: str | None) -> str | None:
    """RFC 3339 to whole seconds in UTC ('2026-11-22T04:17:11.45729382Z' -> '...04:17:11Z')."""
    if not timestamp:
        return None
    try:
        parsed = dt.datetime.fromisoformat(re.sub(r"\.\d+", "", timestamp, count=1))
    except ValueError:
        return timestamp
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def describe(client: RegistryClient, ref: Reference, m: Manifest) -> Published:
    tag = ref.tag or ref.digest or ""
    layers = m.data.get("layers") or []
    size = sum(int(lay.get("size", 0)) for lay in layers) if layers else None
    if is_bundle_manifest(m):
        a = m.annotations
        return Published(tag=tag, kind="bundle", digest=m.digest, version=a.get(A_VERSION),
                         bundle_digest=a.get(A_DIGEST), created=a.get(A_CREATED), size=size)
    config = m.data.get("config") or {}
    if config.get("mediaType", "").endswith("container.image.v1+json") or \
            config.get("mediaType") == "application/vnd.oci.image.config.v1+json":
        created = labels = None
        try:
            blob = client.fetch_json_blob(ref, config["digest"])
            created = blob.get("created")
            labels = (blob.get("config") or {}).get("Labels") or {}
        except (BootpackError, KeyError, ValueError):
            labels = {}
        version = (labels or {}).get(A_VERSION) or (labels or {}).get(A_OCI_VERSION)
        if version is None and tag.endswith(APPLIANCE_SUFFIX) and tag != LATEST + APPLIANCE_SUFFIX:
            version = tag.removesuffix(APPLIANCE_SUFFIX)
        return Published(tag=tag, kind="appliance", digest=m.digest, version=version,
                         bundle_digest=(labels or {}).get(A_DIGEST), created=_seconds(created),
                         size=size)
    return Published(tag=tag, kind="other", digest=m.digest, version=None, bundle_digest=None,
                     created=None, size=size)


def inspect_repository(client: RegistryClient, repo: Reference) -> list[Published]:
    """Every tag of repo (or just repo's tag/digest), newest first."""
    if repo.tag or repo.digest:
        refs = [repo]
    else:
        refs = [repo.with_tag(t) for t in client.list_tags(repo)]
        if not refs:
            raise BootpackError(f"{repo}: nothing published in this repository (or it does not exist)")
    found = []
    for ref in refs:
        m = client.get_manifest_raw(ref)
        if m is None:
            if repo.tag or repo.digest:
                raise BootpackError(f"{ref}: no such tag or digest")
            continue  # deleted between listing and fetching
        found.append(describe(client, ref, m))
    # An appliance without a version label (latest-appliance) serves the bundle with its digest.
    versions = {p.bundle_digest: p.version for p in found if p.kind == "bundle" and p.version}
    found = [dataclasses.replace(p, version=versions.get(p.bundle_digest))
             if p.kind == "appliance" and p.version is None else p for p in found]
    found.sort(key=lambda p: p.tag)
    found.sort(key=lambda p: p.created or "", reverse=True)
    return found
