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
