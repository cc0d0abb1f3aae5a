"""The UEFI chain's files come from Debian's signed packages, with a fix-it message if absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootpack import loaders
from bootpack.errors import BootpackError


def test_uefi_files_are_debians_signed_shim_and_network_grub() -> None:
    found = loaders.find_uefi_files()
    assert found["bootx64.efi"] == Path("/usr/lib/shim/shimx64.efi.signed")
    assert found["grubx64.efi"] == Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
    assert found["mmx64.efi"] == Path("/usr/lib/shim/mmx64.efi.signed")
    assert found["grub/x86_64-efi/http.mod"] == Path("/usr/lib/grub/x86_64-efi/http.mod")
    for name, path in found.items():
        magic = b"\x7fE" if name.endswith(".mod") else b"MZ"  # an ELF module, PE images
        assert path.read_bytes()[:2] == magic


def test_missing_uefi_file_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(loaders.UEFI_FILES, "grubx64.efi", (tmp_path / "grubnetx64.efi.signed",
                                                            "grub-efi-amd64-signed"))
    with pytest.raises(BootpackError, match="install Debian's `grub-efi-amd64-signed` package"):
        loaders.find_uefi_files()


def test_chains_pick_the_files() -> None:
    assert "bootx64.efi" not in loaders.find_loader_files(["bios"])
    only_uefi = loaders.find_loader_files(["uefi"])
    assert "pxelinux.0" not in only_uefi and "grubx64.efi" in only_uefi


def test_arm64_files_are_debians_signed_arm64_shim_and_network_grub() -> None:
    # scripts/install unpacks Debian's arm64 packages under loaders.ARM64_ROOT on this x86-64 box
    found = loaders.find_uefi_arm64_files()
    assert sorted(found) == ["bootaa64.efi", "grub/arm64-efi/http.mod", "grubaa64.efi", "mmaa64.efi"]
    assert found["grubaa64.efi"].name == "grubnetaa64.efi.signed"
    assert found["bootaa64.efi"].name == "shimaa64.efi.signed"
    for name, path in found.items():
        data = path.read_bytes()
        if name.endswith(".mod"):
            assert data[:4] == b"\x7fELF" and data[18:20] == b"\xb7\x00"  # EM_AARCH64
        else:  # a PE image for arm64 (IMAGE_FILE_MACHINE_ARM64)
            pe = int.from_bytes(data[0x3C:0x40], "little")
            assert data[:2] == b"MZ" and data[pe:pe + 6] == b"PE\0\0\x64\xaa"
    assert set(loaders.find_loader_files(["uefi-arm64"])) == set(found)


def test_missing_arm64_files_say_how_to_fetch_them(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loaders.ARM64_ENV, str(tmp_path))
    with pytest.raises(BootpackError) as info:
        loaders.find_uefi_arm64_files()
    text = str(info.value)
    assert "the uefi-arm64 chain's loaders are missing" in text and str(tmp_path) in text
    assert "dpkg --add-architecture arm64" in text and "grub-efi-arm64-signed:arm64" in text
    assert "scripts/install" in text and 'drop "uefi-arm64" from loaders.chains' in text
