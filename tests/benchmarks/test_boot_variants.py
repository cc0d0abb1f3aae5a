"""benchmarks.boot_variants: a variant is a copy of the bundle; the bundle itself never changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import boot_variants
from benchmarks.boot_speed import MACS


def _work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    images = work / "out" / "tftpboot" / "images" / "debian"
    images.mkdir(parents=True)
    (images / "squashfs.img").write_bytes(b"bundle squashfs")
    cfg = work / "out" / "tftpboot" / "pxelinux.cfg"
    cfg.mkdir()
    (cfg / f"01-{MACS['live'].replace(':', '-')}").write_text(
        "DEFAULT live\nLABEL live\n  KERNEL vmlinuz\n  APPEND root=live:x ip=dhcp\n")
    return work


def test_variant_swaps_files_and_adds_words_without_touching_the_bundle(tmp_path: Path) -> None:
    work = _work(tmp_path)
    other = tmp_path / "other.img"
    other.write_bytes(b"variant squashfs")
    root = boot_variants.variant_tree(work, "lz4", "live",
                                      [f"images/debian/squashfs.img={other}"], "quiet")
    assert (root / "images/debian/squashfs.img").read_bytes() == b"variant squashfs"
    bundle = work / "out" / "tftpboot"
    assert (bundle / "images/debian/squashfs.img").read_bytes() == b"bundle squashfs"
    name = f"01-{MACS['live'].replace(':', '-')}"
    assert "  APPEND quiet root=live:x ip=dhcp\n" in (root / "pxelinux.cfg" / name).read_text()
    assert "APPEND root=live:x" in (bundle / "pxelinux.cfg" / name).read_text()


def test_variant_refuses_a_missing_file(tmp_path: Path) -> None:
    work = _work(tmp_path)
    with pytest.raises(SystemExit, match="both existing files"):
        boot_variants.variant_tree(work, "x", "live", [f"images/debian/nope.img={tmp_path}/a"], "")


def test_summary_gives_medians_per_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"name": "a", "entry": "live", "total": t, "phases": {"to marker": t / 2}}
            for t in (50.0, 60.0, 70.0)]
    (tmp_path / "variants.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    boot_variants.summary(tmp_path)
    assert "a (live): 3 boots, median 60.0 s (to marker 30.0)" in capsys.readouterr().out
