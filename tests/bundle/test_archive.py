from __future__ import annotations

import hashlib
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


def _tree(root: Path) -> Path:
    (root / "roots/img/etc").mkdir(parents=True)
    (root / "roots/img/etc/os-release").write_text("ID=test\n" * 50)
    (root / "roots/img/sh").symlink_to("etc/os-release")
    (root / "tftpboot/images").mkdir(parents=True)
    (root / "tftpboot/images/vmlinuz").write_bytes(bytes(range(256)) * 8192)  # 2 MiB: own member
    (root / "tftpboot/menu.cfg").write_text("MENU TITLE one\n")
    (root / "bundle.json").write_text("{}\n")
    return root


def test_archive_is_one_gzip_member_per_tree_big_file_and_run_of_small_files(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree")
    members = write_archive(tree, tmp_path / "a.tar.gz", "x", mtime=0)
    raw = (tmp_path / "a.tar.gz").read_bytes()
    # small (top, bundle.json, roots), the root tree, small (tftpboot, images), the kernel,
    # small (menu.cfg), then the tar end blocks in a member of their own
    assert len(members) == 5
    assert [raw[m.offset:m.offset + 2] for m in members] == [b"\x1f\x8b"] * 5
    assert sum(m.length for m in members) < len(raw)  # + the end member
    with tarfile.open(tmp_path / "a.tar.gz", "r:gz") as tar:  # one stream to a reader
        assert "x/tftpboot/images/vmlinuz" in tar.getnames()


def test_a_menu_change_reuses_every_other_member_and_gives_the_fresh_bytes(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree")
    first = write_archive(tree, tmp_path / "a.tar.gz", "x", mtime=0)
    (tree / "tftpboot/menu.cfg").write_text("MENU TITLE two\n")
    (tmp_path / "src").mkdir()
    # Unchanged members are copied from the earlier archive, never recompressed: the kernel is
    # replaced by a file of the same size after its digest was taken, and its old bytes are
    # what the new archive holds (the digest, as the manifest gives it, is the member's key).
    kernel = tree / "tftpboot/images/vmlinuz"
    digests = {"tftpboot/images/vmlinuz": "sha256:" + hashlib.sha256(kernel.read_bytes()).hexdigest()}
    original = kernel.read_bytes()
    kernel.write_bytes(b"\0" * len(original))
    again = write_archive(tree, tmp_path / "b.tar.gz", "x", mtime=0, digests=digests,
                          earlier=(tmp_path / "a.tar.gz", first))
    with tarfile.open(tmp_path / "b.tar.gz", "r:gz") as tar:
        member = tar.extractfile("x/tftpboot/images/vmlinuz")
        assert member is not None and member.read() == original
    kernel.write_bytes(original)
    fresh = write_archive(tree, tmp_path / "c.tar.gz", "x", mtime=0)
    assert (tmp_path / "b.tar.gz").read_bytes() == (tmp_path / "c.tar.gz").read_bytes()
    assert [m.key for m in again] == [m.key for m in fresh]
    changed = [i for i, (a, b) in enumerate(zip(first, again, strict=True)) if a.key != b.key]
    assert changed == [4]  # the run holding menu.cfg only


def test_a_big_compressed_file_is_stored_and_a_big_text_is_deflated(tmp_path: Path) -> None:
    import os
    import zlib

    tree = tmp_path / "tree"
    tree.mkdir()
    noise = os.urandom(3 << 20)  # stands for a zstd initrd or a squashfs: incompressible
    (tree / "packed.img").write_bytes(noise)
    (tree / "text").write_bytes(b"the same line again\n" * (1 << 17))  # 2.6 MB, compressible
    members = write_archive(tree, tmp_path / "a.tar.gz", "x", mtime=0)
    by_group = {m.group: m for m in members}
    packed, text = by_group["x/file:packed.img"], by_group["x/file:text"]
    assert len(noise) < packed.length < len(noise) * 1.01  # stored: deflate's framing only
    assert text.length < 100_000
    raw = (tmp_path / "a.tar.gz").read_bytes()
    # A stored member is still plain gzip (deflate stored blocks), and the archive reads whole.
    stream = zlib.decompressobj(31).decompress(raw[packed.offset:packed.offset + packed.length])
    assert noise in stream
    extract_archive(tmp_path / "a.tar.gz", tmp_path / "out")
    assert (tmp_path / "out/packed.img").read_bytes() == noise
    # The same tree gives the same bytes (the choice depends on the content only).
    write_archive(tree, tmp_path / "b.tar.gz", "x", mtime=0)
    assert (tmp_path / "b.tar.gz").read_bytes() == raw
