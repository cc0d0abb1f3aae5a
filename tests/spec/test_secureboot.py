"""Secure Boot signature detection on real kernels, cross-checked with sbsigntool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bootpack.cli import main
from bootpack.spec.secureboot import kernel_signature, pe_signature
from tests.support.marker import debian_kernel
from tests.support.specs import lab_data, write_spec


def unsigned_copy(kernel: Path, target: Path) -> Path:
    """Debian's kernel with its signature removed by sbsigntool (a developer's bzImage is like it)."""
    if shutil.which("sbattach") is None:
        pytest.fail("sbattach not installed: run scripts/install --test (sbsigntool)")
    shutil.copyfile(kernel, target)
    subprocess.run(["sbattach", "--remove", str(target)], check=True, capture_output=True)
    listed = subprocess.run(["sbverify", "--list", str(target)], capture_output=True, text=True)
    assert "No signature table present" in listed.stdout + listed.stderr
    return target


def test_debians_kernel_is_signed_and_a_stripped_one_is_not(tmp_path: Path) -> None:
    kernel = debian_kernel()
    listed = subprocess.run(["sbverify", "--list", str(kernel)], capture_output=True, text=True)
    assert "Debian Secure Boot Signer" in listed.stdout  # the real tool agrees it is signed
    assert kernel_signature(kernel) == "signed"
    assert kernel_signature(unsigned_copy(kernel, tmp_path / "vmlinuz")) == "unsigned"
    assert pe_signature(b"\x7fELF" + bytes(100)) == "not-pe"
    assert pe_signature(b"MZ" + bytes(10)) == "not-pe"


def test_validate_warns_about_an_unsigned_kernel_marked_for_secure_boot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = lab_data()
    data["entries"][0]["secure_boot"] = True
    spec = write_spec(tmp_path, data)  # stand-in kernel file: no PE image at all
    unsigned_copy(debian_kernel(), tmp_path / "artifacts" / "vmlinuz")
    assert main(["validate", str(spec)]) == 0
    err = capsys.readouterr().err
    assert "entries[0] (live): secure_boot = true but kernel 'artifacts/vmlinuz' has no Secure Boot " \
           "signature" in err and "MOK" in err
    shutil.copyfile(debian_kernel(), tmp_path / "artifacts" / "vmlinuz")
    assert main(["validate", str(spec)]) == 0
    assert "warning" not in capsys.readouterr().err
    data["entries"][0]["secure_boot"] = False
    unsigned_copy(debian_kernel(), tmp_path / "artifacts" / "vmlinuz")
    assert main(["validate", str(write_spec(tmp_path, data, artifacts=False))]) == 0
    assert "warning" not in capsys.readouterr().err


def test_validate_warns_that_secure_boot_machines_cannot_boot_behind_a_proxy_dhcp(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = lab_data()
    data["dhcp"] = {"mode": "proxy", "subnet": "10.0.2.0/24"}
    data["loaders"] = {"chains": ["bios", "uefi", "ipxe"]}
    data["entries"][0]["secure_boot"] = True
    shutil.copyfile(debian_kernel(), (spec := write_spec(tmp_path, data)).parent / "artifacts" / "vmlinuz")
    assert main(["validate", str(spec)]) == 0
    err = capsys.readouterr().err
    assert "proxy mode: x86-64 UEFI clients get iPXE (not signed), so machines with Secure Boot on " \
           "cannot boot entries live here" in err, err
    data["loaders"] = {"chains": ["bios", "uefi"]}  # shim -> GRUB: GRUB stops behind a proxy
    assert main(["validate", str(write_spec(tmp_path, data, artifacts=False))]) == 0
    assert "add 'ipxe' to loaders.chains" in capsys.readouterr().err
    data["loaders"] = {"chains": ["bios"]}
    assert main(["validate", str(write_spec(tmp_path, data, artifacts=False))]) == 0
    assert "warning" not in capsys.readouterr().err
