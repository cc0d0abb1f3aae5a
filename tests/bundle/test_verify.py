"""bundle/verify.py: a bundle directory or archive against its bundle.json."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import pytest

from bootpack.bundle import Bundle
from bootpack.bundle.verify import archive_manifest, check_digest, check_directory, verified_archive, verify
from bootpack.cli import main
from bootpack.errors import BootpackError
from bootpack.progress import QUIET, Progress
from tests.support.specs import LAB, write_spec


@pytest.fixture
def built(tmp_path: Path) -> Path:
    assert main(["-q", "build", str(write_spec(tmp_path / "in", LAB)), "-o", str(tmp_path / "out")]) == 0
    return tmp_path / "out"


def test_verify_names_every_difference(built: Path) -> None:
    bundle = Bundle.open(built)
    assert verify(bundle) == []
    (built / "tftpboot/pxelinux.cfg/default").write_text("tampered\n")
    (built / "etc/dhcpd.conf").unlink()
    (built / "etc/extra").write_text("x")
    assert verify(bundle) == ["missing: etc/dhcpd.conf", "unexpected: etc/extra",
                              "changed: tftpboot/pxelinux.cfg/default"]
    with pytest.raises(BootpackError, match=r"does not match its bundle.json: missing: etc/dhcpd.conf, "
                       r"unexpected: etc/extra, changed: tftpboot/pxelinux.cfg/default; rebuild"):
        check_directory(bundle)


def test_digest_must_add_up(built: Path) -> None:
    manifest = Bundle.open(built).manifest
    check_digest(manifest, "here")
    wrong = manifest.model_copy(update={"digest": "sha256:" + "0" * 64})
    with pytest.raises(BootpackError, match=r"here: bundle\.json says digest sha256:0+ but its files add up"):
        check_digest(wrong, "here")


def test_archive_manifest_reads_and_checks_in_one_pass(built: Path, tmp_path: Path) -> None:
    archive = built.with_name("out.tar.gz")
    assert archive_manifest(archive) == Bundle.open(built).manifest
    # An archive whose file differs from its bundle.json.
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="tar")
    top = tmp_path / "x" / "lab-1.0.0"
    (top / "etc/dhcpd.conf").write_text("changed\n")
    bad = tmp_path / "bad.tar.gz"
    with gzip.open(bad, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
        tar.add(top, arcname="lab-1.0.0")
    with pytest.raises(BootpackError, match=r"its files do not match its bundle\.json"):
        archive_manifest(bad)
    bad.write_bytes(b"not gzip")
    with pytest.raises(BootpackError, match="unreadable archive"):
        archive_manifest(bad)


def test_verified_archive(built: Path, tmp_path: Path) -> None:
    quiet = Progress(QUIET)
    work = tmp_path / "work"
    work.mkdir()
    bundle = Bundle.open(built)
    assert verified_archive(bundle, work, quiet) == bundle  # its own DIR.tar.gz holds it
    original = bundle.archive.read_bytes()
    bundle.archive.unlink()
    again = verified_archive(bundle, work, quiet)
    assert again.archive == work / "lab-1.0.0.tar.gz"
    assert again.archive.read_bytes() == original  # deterministic: the same bytes
    # A damaged archive is written again from the directory, which is checked first.
    bundle.archive.write_bytes(b"damaged")
    assert verified_archive(bundle, work, quiet).archive == work / "lab-1.0.0.tar.gz"
    (built / "tftpboot/pxelinux.cfg/default").write_text("tampered\n")
    with pytest.raises(BootpackError, match=r"changed: tftpboot/pxelinux\.cfg/default"):
        verified_archive(bundle, work, quiet)
