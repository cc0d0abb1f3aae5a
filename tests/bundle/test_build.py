"""`bootpack build`: the tree, the manifest, byte-identical rebuilds, and atomic failure."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from bootpack.bundle import Bundle
from bootpack.bundle.verify import verify
from bootpack.cli import main
from tests.support.outputs import leftovers
from tests.support.specs import INITRD, KERNEL, LAB, lab_data, write_spec


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def build(spec: Path, output: Path, *extra: str) -> int:
    return main(["-q", "build", str(spec), "--output", str(output), *extra])


def test_build_writes_the_whole_tree(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    assert build(spec, tmp_path / "out") == 0
    out = tmp_path / "out"
    for name in ("pxelinux.0", "ldlinux.c32", "menu.c32", "libutil.c32", "libcom32.c32",
                 "pxelinux.cfg/default", "pxelinux.cfg/01-52-54-00-aa-bb-cc",
                 "images/kdev/vmlinuz", "images/kdev/initrd.img"):
        assert (out / "tftpboot" / name).is_file(), name
    for name in ("dhcpd.conf", "dnsmasq.conf", "kea-dhcp4.json"):
        assert (out / "etc" / name).is_file(), name
    assert (out / "tftpboot/images/kdev/vmlinuz").read_bytes() == KERNEL
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["name"] == "lab" and manifest["version"] == "1.0.0"
    assert manifest["spec_digest"].startswith("sha256:")
    rows = {row["path"]: row for row in manifest["files"]}
    kernel = rows["tftpboot/images/kdev/vmlinuz"]
    assert kernel["size"] == len(KERNEL)
    assert kernel["sha256"] == "sha256:" + hashlib.sha256(KERNEL).hexdigest()
    assert verify(Bundle.open(out)) == []
    (out / "tftpboot/images/kdev/vmlinuz").write_bytes(b"tampered")
    assert verify(Bundle.open(out)) == ["changed: tftpboot/images/kdev/vmlinuz"]


def test_archive_is_deterministic(tmp_path: Path) -> None:
    archive = tmp_path / "out.tar.gz"
    assert build(write_spec(tmp_path / "in", LAB), tmp_path / "out") == 0
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "lab-1.0.0" and names == sorted(names, key=lambda n: n.split("/"))
    assert {m.mtime for m in members} == {0} and {m.uid for m in members} == {0}
    raw = archive.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip: no mtime
    assert raw[3] & 0x08 == 0  # gzip: no file name


def test_two_builds_anywhere_at_any_time_are_byte_identical(tmp_path: Path) -> None:
    first = write_spec(tmp_path / "a" / "project", LAB)
    second = write_spec(tmp_path / "b" / "elsewhere", "# same spec, other place\n" + LAB)
    os.utime(second.parent / "artifacts" / "vmlinuz", (1, 1))
    assert build(first, tmp_path / "a" / "out") == 0
    time.sleep(1.1)
    assert build(second, tmp_path / "b" / "bundle") == 0
    assert tree_digest(tmp_path / "a" / "out") == tree_digest(tmp_path / "b" / "bundle")
    assert (tmp_path / "a" / "out.tar.gz").read_bytes() == (tmp_path / "b" / "bundle.tar.gz").read_bytes()


def test_rebuild_replaces_an_earlier_bundle(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    assert build(spec, tmp_path / "out") == 0
    data = lab_data()
    data["hosts"] = []
    write_spec(tmp_path / "in", data)
    assert build(spec, tmp_path / "out") == 0
    assert not (tmp_path / "out/tftpboot/pxelinux.cfg/01-52-54-00-aa-bb-cc").exists()
    assert leftovers(tmp_path) == []


def test_failed_build_leaves_existing_output_exactly_as_it_was(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    assert build(spec, tmp_path / "out") == 0
    before = tree_digest(tmp_path / "out")
    archive_before = (tmp_path / "out.tar.gz").read_bytes()
    (tmp_path / "in/artifacts/initrd.img").unlink()
    capsys.readouterr()
    assert build(spec, tmp_path / "out") == 2
    assert "images.kdev.initrd: file 'artifacts/initrd.img' not found" in capsys.readouterr().err
    # A failure late in the build (missing syslinux files) must not touch it either.
    (tmp_path / "in/artifacts/initrd.img").write_bytes(INITRD + b"new\n")
    assert build(spec, tmp_path / "out", "--syslinux-dir", str(tmp_path / "nowhere")) == 2
    assert tree_digest(tmp_path / "out") == before
    assert (tmp_path / "out.tar.gz").read_bytes() == archive_before
    assert leftovers(tmp_path) == []


def test_refuses_to_replace_a_folder_that_is_not_a_bundle(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    assert build(spec, precious) == 2
    assert "is not a bootpack bundle" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_missing_syslinux_names_the_package(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from bootpack import loaders as syslinux

    monkeypatch.setattr(syslinux, "DEBIAN_DIRS", ((tmp_path / "none", "pxelinux"),) * 2)
    assert build(write_spec(tmp_path / "in", LAB), tmp_path / "out") == 2
    assert "pxelinux.0 not found; install Debian's `pxelinux` package" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_syslinux_dir_override(tmp_path: Path) -> None:
    folder = tmp_path / "syslinux"
    folder.mkdir()
    for name in ("lpxelinux.0", "pxelinux.0", "ldlinux.c32", "menu.c32", "libutil.c32",
                 "libcom32.c32"):
        (folder / name).write_bytes(name.encode())
    assert build(write_spec(tmp_path / "in", LAB), tmp_path / "out", "--syslinux-dir", str(folder)) == 0
    assert (tmp_path / "out/tftpboot/menu.c32").read_bytes() == b"menu.c32"
    # the bundle's pxelinux.0 is lpxelinux.0 (HTTP-capable), under the name DHCP hands out
    assert (tmp_path / "out/tftpboot/pxelinux.0").read_bytes() == b"lpxelinux.0"
    # and plain pxelinux.0 is what a BIOS client whose PXE ROM is iPXE gets (iPXE's own HTTP)
    assert (tmp_path / "out/tftpboot/pxelinux-ipxe.0").read_bytes() == b"pxelinux.0"


def test_bundle_is_readable_by_daemons(tmp_path: Path) -> None:
    assert build(write_spec(tmp_path / "in", LAB), tmp_path / "out") == 0
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def _inode(path: Path) -> tuple[int, int]:
    st = path.resolve().stat()
    return st.st_dev, st.st_ino


def test_unchanged_rebuild_keeps_the_version_and_a_menu_change_moves_no_bulk_bytes(
        tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    out = tmp_path / "out"
    assert build(spec, out) == 0
    version = os.readlink(tmp_path / ".out.bootpack/current")
    kernel = next((out / "tftpboot").rglob("vmlinuz"))
    kernel_inode, archive_inode = _inode(kernel), _inode(tmp_path / "out.tar.gz")
    assert build(spec, out) == 0  # nothing changed: nothing written, the same version
    assert os.readlink(tmp_path / ".out.bootpack/current") == version
    assert _inode(tmp_path / "out.tar.gz") == archive_inode
    write_spec(tmp_path / "in", LAB.replace('title = "Lab"', 'title = "Lab, renamed"'))
    assert build(spec, out) == 0
    assert os.readlink(tmp_path / ".out.bootpack/current") != version
    assert "Lab, renamed" in (out / "tftpboot/pxelinux.cfg/default").read_text()
    assert _inode(kernel) == kernel_inode  # linked from the previous version, not copied
    # The incrementally written archive is the one a fresh build writes, and it is whole.
    assert build(spec, tmp_path / "fresh") == 0
    assert (tmp_path / "out.tar.gz").read_bytes() == (tmp_path / "fresh.tar.gz").read_bytes()
    assert verify(Bundle.open(out)) == []
    assert leftovers(tmp_path) == []
