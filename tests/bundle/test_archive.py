from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from bootpack.bundle.archive import extract_archive, write_archive


def test_roundtrip_keeps_links_and_special_mode_bits(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "su").write_bytes(b"su")
    (tree / "bin" / "su").chmod(0o4755)
    (tree / "tmp").mkdir()
    (tree / "tmp").chmod(0o1777)
    (tree / "sh").symlink_to("bin/su")
    write_archive(tree, tmp_path / "a.tar.gz", "x", mtime=0)
    extract_archive(tmp_path / "a.tar.gz", tmp_path / "out")
    assert (tmp_path / "out/bin/su").stat().st_mode & 0o7777 == 0o4755
    assert (tmp_path / "out/sh").is_symlink()
    assert (tmp_path / "out/sh").readlink() == Path("bin/su")


def test_extract_refuses_paths_outside_the_target(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        top = tarfile.TarInfo("x")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        evil = tarfile.TarInfo("x/../../evil")
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"!"))
    (tmp_path / "a.tar.gz").write_bytes(raw.getvalue())
    with pytest.raises(tarfile.FilterError):
        extract_archive(tmp_path / "a.tar.gz", tmp_path / "out")
    assert not (tmp_path / "evil").exists()


@pytest.fixture
def python_without_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Debian 12's Python 3.11.2 (the appliance image's): no tarfile extraction filters."""
    monkeypatch.delattr(tarfile, "tar_filter")


def test_roundtrip_without_extraction_filters(tmp_path: Path, python_without_filters: None) -> None:
    test_roundtrip_keeps_links_and_special_mode_bits(tmp_path)


@pytest.mark.parametrize("name, kind, link", [
    ("x/../../evil", tarfile.REGTYPE, ""),
    ("x/l", tarfile.SYMTYPE, "/etc/passwd"),
    ("x/l", tarfile.SYMTYPE, "../../outside"),
    ("x/h", tarfile.LNKTYPE, "../outside"),
])
def test_without_extraction_filters_the_same_is_refused(tmp_path: Path, python_without_filters: None,
                                                        name: str, kind: bytes, link: str) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        top = tarfile.TarInfo("x")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        evil = tarfile.TarInfo(name)
        evil.type, evil.linkname = kind, link
        tar.addfile(evil, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    (tmp_path / "a.tar.gz").write_bytes(raw.getvalue())
    with pytest.raises(ValueError, match=r"outside|absolute"):
        extract_archive(tmp_path / "a.tar.gz", tmp_path / "out")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out").exists()
