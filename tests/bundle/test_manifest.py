"""BundleManifest and Bundle: bundle.json as a value, read once, written byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pydantic
import pytest

from bootpack.bundle import Bundle, BundleManifest
from bootpack.bundle.manifest import FileEntry, ImageProvenance, LinkEntry, LoaderSource, make_manifest
from bootpack.cli import main
from bootpack.errors import BootpackError
from tests.support.specs import LAB, write_spec

KEYS = ["format", "name", "version", "description", "digest", "spec_digest", "bootpack_version"]


@pytest.fixture
def built(tmp_path: Path) -> Path:
    assert main(["-q", "build", str(write_spec(tmp_path / "in", LAB)), "-o", str(tmp_path / "out")]) == 0
    return tmp_path / "out"


def test_round_trip_gives_identical_bytes(built: Path) -> None:
    raw = (built / "bundle.json").read_bytes()
    manifest = BundleManifest.loads(raw, "bundle.json")
    assert manifest.dumps().encode() == raw
    # no images key without built images; where each loader came from (this machine's Debian)
    assert list(json.loads(raw)) == [*KEYS, "loaders", "files"]
    loaders = json.loads(raw)["loaders"]
    assert loaders["pxelinux.0"] == {"package": "pxelinux", "path": "/usr/lib/PXELINUX/lpxelinux.0",
                                     "image": None}
    assert loaders["bootx64.efi"] == {"package": "shim-signed", "image": None,
                                      "path": "/usr/lib/shim/shimx64.efi.signed"}
    assert {"pxelinux.0", "menu.c32", "grubx64.efi", "grub/x86_64-efi/http.mod"} <= set(loaders)
    assert {f"tftpboot/{name}" for name in loaders} <= {r.path for r in manifest.files}
    assert manifest.computed_digest() == manifest.digest
    bundle = Bundle.open(built)
    assert bundle.manifest == manifest and bundle.directory == built.absolute()
    assert bundle.archive == built.with_name("out.tar.gz").absolute()
    assert (bundle.name, bundle.version, bundle.digest) == ("lab", "1.0.0", manifest.digest)
    assert manifest.size == sum(row.get("size", 0) for row in json.loads(raw)["files"])


def test_images_and_links_keep_their_place(tmp_path: Path) -> None:
    root = tmp_path / "b"
    (root / "tftpboot").mkdir(parents=True)
    (root / "tftpboot/k").write_bytes(b"kernel\n")
    (root / "tftpboot/alias").symlink_to("k")
    images = {"deb": {"source_image": "sha256:" + "1" * 64, "kernel_version": "6.1.0",
                      "steps": {"rootfs": "sha256:" + "2" * 64}}}
    manifest = make_manifest(root, name="n", version="1", description="", spec_digest="sha256:x",
                             bootpack_version="0",
                             images={n: ImageProvenance.model_validate(p) for n, p in images.items()})
    text = manifest.dumps()
    data = json.loads(text)
    assert list(data) == [*KEYS, "images", "files"]
    assert data["images"] == images
    assert data["files"] == [
        {"path": "tftpboot/alias", "link": "k"},
        {"path": "tftpboot/k", "sha256": "sha256:" + hashlib.sha256(b"kernel\n").hexdigest(), "size": 7},
    ]
    assert isinstance(manifest.files[0], LinkEntry) and isinstance(manifest.files[1], FileEntry)
    assert BundleManifest.loads(text, "x").dumps() == text
    # The bundle digest: sha256 of the canonical JSON of name, version and the file rows.
    canonical = json.dumps({"name": "n", "version": "1", "files": data["files"]}, sort_keys=True,
                           separators=(",", ":"))
    assert manifest.digest == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_manifest_is_frozen(built: Path) -> None:
    manifest = Bundle.open(built).manifest
    with pytest.raises(pydantic.ValidationError):
        manifest.name = "other"


def test_open_errors(tmp_path: Path, built: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BootpackError, match=r"empty: not a bootpack bundle \(no bundle.json\); "
                       r"build one with `bootpack build SPEC --output DIR`"):
        Bundle.open(tmp_path / "empty")
    with pytest.raises(BootpackError, match="not a bootpack bundle"):
        Bundle.open(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/bundle.json").write_text("{not json")
    with pytest.raises(BootpackError, match=r"bad/bundle.json: unreadable manifest: Expecting"):
        Bundle.open(tmp_path / "bad")
    data = json.loads((built / "bundle.json").read_text())
    del data["files"]
    (tmp_path / "bad/bundle.json").write_text(json.dumps(data))
    with pytest.raises(BootpackError, match=r"unreadable manifest: files: Field required"):
        Bundle.open(tmp_path / "bad")
    data = json.loads((built / "bundle.json").read_text())
    data["files"][0]["size"] = "7"
    (tmp_path / "bad/bundle.json").write_text(json.dumps(data))
    with pytest.raises(BootpackError, match=r"unreadable manifest: files\.0"):
        Bundle.open(tmp_path / "bad")


@pytest.mark.parametrize("files", [(), (
    FileEntry(path="roots/d/ünïcode \"quoted\"\\tab\t", sha256="sha256:" + "0" * 64, size=7),
    LinkEntry(path="roots/d/link", link="../ü/\n"),
    FileEntry(path="x", sha256="sha256:" + "1" * 64, size=0))])
@pytest.mark.parametrize("images", [None, {"d": ImageProvenance(
    source_image="sha256:i", kernel_version="6.1", steps={"rootfs": "k"})}])
@pytest.mark.parametrize("loaders", [None, {"tftpboot/bootaa64.efi": LoaderSource(
    package="shim-signed", path="/usr/lib/shim/shimaa64.efi.signed", image="d")}])
def test_dumps_writes_what_json_dumps_of_the_model_writes(
        files: tuple[FileEntry | LinkEntry, ...],
        images: dict[str, ImageProvenance] | None,
        loaders: dict[str, LoaderSource] | None) -> None:
    # dumps formats the rows itself (speed); its bytes are those of the plain json.dumps.
    manifest = BundleManifest(format=1, name="n", version="1", description="d ü", digest="x",
                              spec_digest="s", bootpack_version="0", images=images,
                              loaders=loaders, files=files)
    data = manifest.model_dump(mode="json")
    for key in ("images", "loaders"):  # optional keys are left out when empty
        if data[key] is None:
            del data[key]
    assert manifest.dumps() == json.dumps(data, indent=2) + "\n"
    assert BundleManifest.loads(manifest.dumps(), "x") == manifest


def test_read_parses_once_while_the_file_is_unchanged(built: Path) -> None:
    path = built / "bundle.json"
    first = BundleManifest.read(path, "x")
    assert BundleManifest.read(path, "x") is first
    raw = path.read_bytes()
    path.unlink()
    path.write_bytes(raw.replace(b'"name": "lab"', b'"name": "lbb"'))  # new inode and ctime
    assert BundleManifest.read(path, "x").name == "lbb"
