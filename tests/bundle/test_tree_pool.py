"""Rebuilds of a bundle with a root tree: the tree pool (bundle/output.py) and the archive member
copied by group (bundle/archive.py) keep every guarantee of a full build.

A real root tree comes only from a container image (minutes of Docker and dracut); here
`build_images` is replaced by one that returns a small real tree on disk (folders, symlinks,
setgid and sticky modes, other owners, a FIFO) with fixed cache keys, so everything bootpack
does after image building runs for real in milliseconds. tests/images/test_build.py rebuilds
the real Debian tree (docker marker).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from bootpack import compiler
from bootpack.bundle import Bundle
from bootpack.bundle.verify import verify
from bootpack.cli import main
from bootpack.images.builder import BuiltImage
from bootpack.spec import load_spec
from tests.support.outputs import leftovers
from tests.support.specs import INITRD, KERNEL, lab_data

TREE = "roots/debian"


def make_tree(root: Path, variant: str = "") -> Path:
    for folder in ("usr/bin", "usr/lib/x", "var/mail", "tmp", "etc/deep/er"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (root / "usr/bin/tool").chmod(0o4755)
    (root / "usr/lib/x/lib.so").write_bytes(b"\x7fELF" + b"x" * 5000)
    (root / "etc/deep/er/conf").write_text(f"setting {variant}\n")
    (root / "etc/hostname").write_text("")
    os.symlink("../usr/bin/tool", root / "etc/tool-link")
    os.mkfifo(root / "etc/fifo")
    os.chown(root / "var/mail", 0, 8)
    (root / "var/mail").chmod(0o2775)
    (root / "tmp").chmod(0o1777)
    return root


@pytest.fixture
def fake_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make `build_images` return an image whose tree is tmp/tree-VARIANT (built on first use)
    and whose cache keys name the variant: `use("b")` is a changed image."""
    chosen = {"variant": "a"}
    art = tmp_path / "art"
    art.mkdir()
    (art / "vmlinuz").write_bytes(KERNEL)
    (art / "initrd.img").write_bytes(INITRD)

    def build_images(loaded: Any, **_: Any) -> dict[str, BuiltImage]:
        variant = chosen["variant"]
        tree = tmp_path / f"tree-{variant}"
        if not tree.exists():
            make_tree(tree, variant)
        return {"debian": BuiltImage(name="debian", kernel=art / "vmlinuz",
                                     initrds={"live": art / "initrd.img"}, tree=tree,
                                     source=f"sha256:{variant * 64}", kernel_version="6.1",
                                     keys={"rootfs": variant * 64}, hits={"rootfs": True})}

    monkeypatch.setattr(compiler, "build_images", build_images)
    return lambda variant: chosen.update(variant=variant)


def write(folder: Path, title: str = "Lab", version: str = "1.0.0") -> Path:
    data = lab_data()
    del data["images"]["kdev"]
    data["bundle"]["version"] = version
    data["menu"]["title"] = title
    data["images"]["debian"] = {"from": "debian:bookworm"}
    for entry in data["entries"]:
        entry.update(image="debian", root="nfs")
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.toml"
    spec.write_text(tomli_w.dumps(data))
    return spec


def build(spec: Path, output: Path) -> None:
    assert main(["-q", "build", str(spec), "--output", str(output)]) == 0


def inode(path: Path) -> int:
    return path.lstat().st_ino


def test_config_rebuilds_recycle_the_tree_and_the_archive_equals_a_fresh_build(
        tmp_path: Path, fake_images: Callable[[str], None]) -> None:
    out, store = tmp_path / "out", tmp_path / ".out.bootpack"
    build(write(tmp_path / "in"), out)
    # The first build leaves a spare of its tree in the pool: the same inodes, its own folders.
    spare = store / "trees" / TREE
    assert inode(spare / "usr/lib/x/lib.so") == inode(out / TREE / "usr/lib/x/lib.so")
    assert inode(spare / "usr") != inode(out / TREE / "usr")
    for n, title in enumerate(("Lab, renamed", "Lab, again", "Lab, third")):
        spare_folder = inode(spare / "usr")
        build(write(tmp_path / "in", title), out)
        # The spare's folders became the new version's (one rename); the replaced version's
        # tree is the next spare.
        assert inode(out / TREE / "usr") == spare_folder, n
        assert title in (out / "tftpboot/pxelinux.cfg/default").read_text()
        assert verify(Bundle.open(out)) == []
        build(write(tmp_path / f"fresh{n}", title), tmp_path / f"fresh{n}" / "out")
        assert (tmp_path / "out.tar.gz").read_bytes() == \
            (tmp_path / f"fresh{n}" / "out.tar.gz").read_bytes()
    assert leftovers(tmp_path) == []
    # The archive carries the tree as it is: owners, modes, links, the FIFO.
    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        got = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
    assert got[f"{TREE}/var/mail"].gid == 8 and got[f"{TREE}/var/mail"].mode == 0o2775
    assert got[f"{TREE}/usr/bin/tool"].mode == 0o4755
    assert got[f"{TREE}/etc/tool-link"].linkname == "../usr/bin/tool"
    assert got[f"{TREE}/etc/fifo"].isfifo()


def test_a_spare_that_differs_from_the_current_tree_is_not_used(
        tmp_path: Path, fake_images: Callable[[str], None]) -> None:
    out, spare = tmp_path / "out", tmp_path / ".out.bootpack/trees" / TREE
    build(write(tmp_path / "in"), out)
    (spare / "etc/extra").write_text("not in the bundle\n")  # a spare that is not the tree
    build(write(tmp_path / "in", "Lab, renamed"), out)
    assert not (out / TREE / "etc/extra").exists()
    assert verify(Bundle.open(out)) == []
    os.utime(spare / "etc/deep", (5, 5))  # a folder time differs: its archive header would
    build(write(tmp_path / "in", "Lab, again"), out)
    assert os.lstat(out / TREE / "etc/deep").st_mtime == 0
    build(write(tmp_path / "fresh", "Lab, again"), tmp_path / "fresh/out")
    assert (tmp_path / "out.tar.gz").read_bytes() == (tmp_path / "fresh/out.tar.gz").read_bytes()
    assert verify(Bundle.open(out)) == []


def test_a_changed_image_or_bundle_version_gets_a_new_tree_and_a_full_archive(
        tmp_path: Path, fake_images: Callable[[str], None]) -> None:
    out = tmp_path / "out"
    build(write(tmp_path / "in"), out)
    fake_images("b")
    build(write(tmp_path / "in"), out)
    assert (out / TREE / "etc/deep/er/conf").read_text() == "setting b\n"
    spare = tmp_path / ".out.bootpack/trees" / TREE
    assert (spare / "etc/deep/er/conf").read_text() == "setting b\n"  # the stale spare went
    build(write(tmp_path / "in", version="2.0.0"), out)  # other prefix: member not reusable
    build(write(tmp_path / "fresh", version="2.0.0"), tmp_path / "fresh/out")
    assert (tmp_path / "out.tar.gz").read_bytes() == (tmp_path / "fresh/out.tar.gz").read_bytes()
    assert verify(Bundle.open(out)) == [] and leftovers(tmp_path) == []


def test_a_killed_rebuild_gives_its_recycled_tree_back_to_the_pool(
        tmp_path: Path, fake_images: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    build(write(tmp_path / "in"), out)
    before = Bundle.open(out).digest
    spare_folder = inode(tmp_path / ".out.bootpack/trees" / TREE / "usr")

    def killed(*args: Any, **kwargs: Any) -> list[Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr(compiler, "write_archive", killed)
    with pytest.raises(KeyboardInterrupt):
        compiler.build_bundle(load_spec(write(tmp_path / "in", "Lab, renamed")), out)
    # Nothing changed at OUT; the tree the rebuild had taken is the spare again.
    assert Bundle.open(out).digest == before and verify(Bundle.open(out)) == []
    assert inode(tmp_path / ".out.bootpack/trees" / TREE / "usr") == spare_folder
    assert leftovers(tmp_path) == []


def test_a_file_of_the_user_in_a_root_tree_is_refused_and_kept(
        tmp_path: Path, fake_images: Callable[[str], None], capsys: pytest.CaptureFixture[str]) -> None:
    # The early check (before image building) skips root trees; the one under the lock has them.
    out = tmp_path / "out"
    build(write(tmp_path / "in"), out)
    (out / TREE / "etc/notes.txt").write_text("mine\n")
    (out / TREE / "usr/lib/x/lib.so").write_bytes(b"\x7fELF" + b"y" * 5000)  # same size
    assert main(["-q", "build", str(write(tmp_path / "in", "Lab, renamed")), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"unexpected: {TREE}/etc/notes.txt" in err, err
    assert f"changed: {TREE}/usr/lib/x/lib.so (same size, other content)" in err, err
    assert (out / TREE / "etc/notes.txt").read_text() == "mine\n"
    assert "Lab, renamed" not in (out / "tftpboot/pxelinux.cfg/default").read_text()
