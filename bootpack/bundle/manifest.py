"""bundle.json: what a bundle is and every file in it, with sha256 and size.

`BundleManifest` is bundle.json as a value; `Bundle` (a directory, its manifest and its archive)
is the one form a bundle travels in between packages, read from disk once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import BootpackError
from ..files import sha256_bytes, sha256_file, walk_rel
from . import layout

FORMAT = 1

# Labels of the appliance image and annotations of the bundle artifact (one name each, so the
# image baked for a bundle is found again by its digest).
NAME_KEY = "dev.bootpack.bundle.name"
VERSION_KEY = "dev.bootpack.bundle.version"
DIGEST_KEY = "dev.bootpack.bundle.digest"
BOOTPACK_VERSION_KEY = "dev.bootpack.version"


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    path: str
    sha256: str
    size: int


class LinkEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    path: str
    link: str


Entry = FileEntry | LinkEntry
_quote = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str (ensure_ascii)


class ImageProvenance(BaseModel):
    """Where a container-built image came from and the cache keys of its steps."""

    model_config = ConfigDict(frozen=True)

    source_image: str
    kernel_version: str
    steps: dict[str, str]


class LoaderSource(BaseModel):
    """Where a boot loader file of the bundle came from (not where on the build machine: the
    same on every machine, so two builds stay byte-identical)."""

    model_config = ConfigDict(frozen=True)

    package: str | None  # the Debian package that ships it; None: a --syslinux-dir folder
    path: str  # its path in that package (a --syslinux-dir folder: its file name)
    image: str | None = None  # the spec image whose root tree carried it; None: this machine's


class BundleManifest(BaseModel):
    """bundle.json. Field order is the file's key order: the bytes must not change."""

    # Unknown keys are ignored, as before the model, so a newer bundle still opens.
    model_config = ConfigDict(frozen=True, extra="ignore")

    format: int
    name: str
    version: str
    description: str
    digest: str
    spec_digest: str
    bootpack_version: str
    images: dict[str, ImageProvenance] | None = None  # container-built images only
    loaders: dict[str, LoaderSource] | None = None  # name in the TFTP root -> where it came from
    files: tuple[Entry, ...]

    @property
    def size(self) -> int:
        return sum(row.size for row in self.files if isinstance(row, FileEntry))

    def computed_digest(self) -> str:
        return bundle_digest(self.name, self.version, self.files)

    def dumps(self) -> str:
        """bundle.json's text: json.dumps(model_dump(), indent=2), with the rows written
        directly (json's indenting encoder is pure Python: 0.3 s for 15,000 rows)."""
        data = self.model_dump(mode="json", exclude={"files"})
        for key in ("images", "loaders"):
            if data[key] is None:
                del data[key]
        data["files"] = []  # the last key: its "[]" is replaced by the rows
        text = json.dumps(data, indent=2, sort_keys=False)
        if self.files:
            q = _quote
            rows = ",\n".join(
                f'    {{\n      "path": {q(r.path)},\n      "sha256": {q(r.sha256)},\n'
                f'      "size": {int(r.size)}\n    }}' if isinstance(r, FileEntry) else
                f'    {{\n      "path": {q(r.path)},\n      "link": {q(r.link)}\n    }}'
                for r in self.files)
            assert text.endswith('"files": []\n}')
            text = text[:-len("[]\n}")] + f"[\n{rows}\n  ]\n}}"
        return text + "\n"

    @classmethod
    def read(cls, path: Path, where: str) -> BundleManifest:
        """`loads` of a bundle.json file, parsed once per process while the file is unchanged
        (a rebuild reads the current one three times; 15,000 rows take 0.1 s to validate)."""
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            found = _read.get(path)
            if found is not None and found[0] == stamp:
                return found[1]
            manifest = cls.loads(f.read(), where)
        _read.clear()  # one bundle at a time: no growth in long-running processes
        _read[path] = (stamp, manifest)
        return manifest

    @classmethod
    def loads(cls, text: str | bytes, where: str) -> BundleManifest:
        try:
            return cls.model_validate(json.loads(text))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(part) for part in first["loc"])
            raise BootpackError(f"{where}: unreadable manifest: {loc}: {first['msg']}") from None
        except ValueError as exc:
            raise BootpackError(f"{where}: unreadable manifest: {exc}") from None


def list_files(root: Path, known: Mapping[str, FileEntry] | None = None,
               trees: Mapping[str, Sequence[Entry]] | None = None) -> list[Entry]:
    """Manifest rows for every regular file and symlink (bundle.json itself and the per-host
    writable roots under hosts/, which are user data, excluded). `known`: rows the caller
    vouches for (a file it just copied from a source of known digest, or hard-linked from a
    sealed earlier version), used when the size agrees instead of hashing the file again.
    `trees`: folders the caller vouches for as a whole (a root tree that is the very inodes
    of a sealed earlier version's), with their rows: not walked."""
    known = known or {}
    trees = trees or {}
    rows: list[Entry] = [row for tree_rows in trees.values() for row in tree_rows]
    base = os.fspath(root)
    for rel in walk_rel(root, skip=set(trees)):
        if rel == layout.MANIFEST or layout.is_user_data(rel):
            continue
        path = os.path.join(base, rel)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            rows.append(LinkEntry(path=rel, link=os.readlink(path)))
        elif stat.S_ISREG(st.st_mode):
            row = known.get(rel)
            if row is not None and st.st_size == row.size:
                rows.append(row)
                continue
            digest, size = sha256_file(Path(path))
            rows.append(FileEntry(path=rel, sha256=digest, size=size))
    if trees:
        rows.sort(key=lambda r: r.path)  # walk_rel's order: by path
    return rows


def bundle_digest(name: str, version: str, files: tuple[Entry, ...] | list[Entry]) -> str:
    """One digest for the whole bundle: its identity and the digest of every file."""
    # The rows as model_dump() gives them, built directly: 15,000 model_dump calls cost a second.
    canonical = json.dumps({"name": name, "version": version,
                            "files": [{"path": r.path, "sha256": r.sha256, "size": r.size}
                                      if isinstance(r, FileEntry) else {"path": r.path, "link": r.link}
                                      for r in files]},
                           sort_keys=True, separators=(",", ":"))
    return sha256_bytes(canonical.encode())


def make_manifest(root: Path, *, name: str, version: str, description: str, spec_digest: str,
                  bootpack_version: str,
                  images: Mapping[str, ImageProvenance] | None = None,
                  loaders: Mapping[str, LoaderSource] | None = None,
                  known: Mapping[str, FileEntry] | None = None,
                  trees: Mapping[str, Sequence[Entry]] | None = None) -> BundleManifest:
    files = tuple(list_files(root, known, trees))
    return BundleManifest.model_validate({
        "format": FORMAT, "name": name, "version": version, "description": description,
        "digest": bundle_digest(name, version, files), "spec_digest": spec_digest,
        "bootpack_version": bootpack_version, "images": images,
        "loaders": dict(sorted(loaders.items())) if loaders else None, "files": files,
    })


_read: dict[Path, tuple[tuple[int, ...], BundleManifest]] = {}  # BundleManifest.read's memo


@dataclass(frozen=True)
class Bundle:
    """A bundle directory, its manifest and its deterministic archive (DIR.tar.gz next to the
    directory unless a push wrote one elsewhere; it may not exist)."""

    directory: Path
    manifest: BundleManifest
    archive: Path

    @classmethod
    def open(cls, directory: Path) -> Bundle:
        """Read bundle.json, with an error that says what to do when it is not a bundle."""
        path = directory / layout.MANIFEST
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise BootpackError(f"{directory}: not a bootpack bundle (no {layout.MANIFEST}); "
                                "build one with `bootpack build SPEC --output DIR`") from None
        except OSError as exc:
            raise BootpackError(f"{path}: unreadable manifest: {exc}") from None
        manifest = BundleManifest.loads(text, str(path))
        directory = directory.absolute()
        return cls(directory, manifest, layout.archive_path(directory))

    def with_archive(self, archive: Path) -> Bundle:
        return dataclasses.replace(self, archive=archive)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def digest(self) -> str:
        return self.manifest.digest


class BundleResult:
    """What a command that built or installed a bundle reports about it (BuildResult,
    PullResult): shortcuts into its Bundle."""

    bundle: Bundle

    @property
    def output(self) -> Path:
        return self.bundle.directory

    @property
    def archive(self) -> Path:
        return self.bundle.archive

    @property
    def files(self) -> int:
        return len(self.bundle.manifest.files)

    @property
    def size(self) -> int:
        return self.bundle.manifest.size
