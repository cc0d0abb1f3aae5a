"""The UEFI chain's files come from Debian's signed packages (this machine's, or an image's that
carries them), with a fix-it message if absent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bootpack import compiler, loaders
from bootpack.bundle.manifest import LoaderSource
from bootpack.errors import BootpackError
from bootpack.images.builder import BuiltImage
from bootpack.spec.load import load_spec
from tests.support.specs import ARM64_KERNEL, INITRD, KERNEL, lab_data, write_spec


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


def _debian_root(root: Path, files: dict[str, tuple[Path, str]], system: Path) -> Path:
    """A root tree holding Debian's real loader files at their Debian paths, copied from this
    machine's (`system`: the root they are installed or unpacked under)."""
    for rel, _package in files.values():
        target = root / str(rel).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(system / str(rel).lstrip("/"), target)
    return root


def _mixed_image_spec(folder: Path) -> Path:
    """An arm64 and an x86-64 image built from Dockerfiles, a live entry each."""
    (folder / "Dockerfile").parent.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    data = lab_data()
    data["menu"]["default"] = "x86"
    data["images"] = {"arm": {"dockerfile": "Dockerfile", "architecture": "arm64"},
                      "x86": {"dockerfile": "Dockerfile", "architecture": "x86_64"}}
    data["entries"] = [{"name": "x86", "image": "x86", "root": "live"},
                       {"name": "arm", "image": "arm", "root": "live"}]
    data["hosts"] = []
    data["loaders"] = {"chains": ["uefi", "uefi-arm64"]}
    return write_spec(folder, data)


def _built(folder: Path, name: str, kernel: bytes, root: Path | None) -> BuiltImage:
    files = folder / name
    files.mkdir(parents=True)
    for file, data in (("vmlinuz", kernel), ("initrd.img", INITRD), ("squashfs.img", b"hsqs")):
        (files / file).write_bytes(data)
    return BuiltImage(name=name, kernel=files / "vmlinuz", initrds={"live": files / "initrd.img"},
                      squashfs=files / "squashfs.img", source="sha256:" + "0" * 64,
                      kernel_version="6.1.0", root=root)


def test_images_carrying_debians_signed_loaders_give_their_uefi_chains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root trees with Debian's real signed shim and network GRUB (copied from this machine's
    packages) give the bundle its UEFI loaders, each chain from the image of its architecture,
    and bundle.json says so. This machine has no arm64 loaders here ($BOOTPACK_ARM64_ROOT is
    empty): the arm64 files can only have come from the image. The images' Docker builds are
    replaced by their results (the real arm64 build, minutes under emulation, is
    tests/appliance/test_real_images_arm64.py); the loader choice and the bundle are real."""
    monkeypatch.setenv(loaders.ARM64_ENV, str(tmp_path / "no-arm64-loaders"))
    arm_root = _debian_root(tmp_path / "arm-root", loaders.UEFI_ARM64_FILES, loaders.ARM64_ROOT)
    x86_root = _debian_root(tmp_path / "x86-root", loaders.UEFI_FILES, Path("/"))
    spec = _mixed_image_spec(tmp_path / "spec")
    built = {"arm": _built(tmp_path, "arm", ARM64_KERNEL, arm_root),
             "x86": _built(tmp_path, "x86", KERNEL, x86_root)}
    monkeypatch.setattr(compiler, "build_images", lambda *args, **kwargs: built)
    out = tmp_path / "out"
    bundle = compiler.build_bundle(load_spec(spec), out).bundle
    sources = bundle.manifest.loaders
    assert sources is not None
    assert sources["bootaa64.efi"] == LoaderSource(
        package="shim-signed", path="/usr/lib/shim/shimaa64.efi.signed", image="arm")
    assert sources["grubaa64.efi"] == LoaderSource(
        package="grub-efi-arm64-signed", image="arm",
        path="/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed")
    assert sources["grubx64.efi"] == LoaderSource(
        package="grub-efi-amd64-signed", image="x86",
        path="/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
    for name, (rel, package) in [*loaders.UEFI_ARM64_FILES.items(), *loaders.UEFI_FILES.items()]:
        root = arm_root if name in loaders.UEFI_ARM64_FILES else x86_root
        assert (sources[name].image, sources[name].package) == (root.name[:3], package)
        assert (out / "tftpboot" / name).read_bytes() == (root / str(rel).lstrip("/")).read_bytes()
    assert json.loads((out / "bundle.json").read_text())["loaders"]["mmaa64.efi"]["image"] == "arm"


def test_an_image_without_all_loaders_or_with_symlinks_out_gives_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's set is used only whole (one GRUB build with its own http.mod), and only as
    regular files inside its root: a symlink to this machine's file is not followed into the
    bundle. Then the machine's own are used, here none: the usual fix-it error."""
    monkeypatch.setenv(loaders.ARM64_ENV, str(tmp_path / "no-arm64-loaders"))
    partial = _debian_root(tmp_path / "partial", loaders.UEFI_ARM64_FILES, loaders.ARM64_ROOT)
    (partial / "usr/lib/grub/arm64-efi/http.mod").unlink()
    linked = _debian_root(tmp_path / "linked", loaders.UEFI_ARM64_FILES, loaders.ARM64_ROOT)
    shim = linked / "usr/lib/shim/shimaa64.efi.signed"
    shim.unlink()
    shim.symlink_to(loaders.ARM64_ROOT / "usr/lib/shim/shimaa64.efi.signed")  # absolute: the host's
    for root in (partial, linked):
        image = loaders.ImageRoot("deb", "arm64", root)
        with pytest.raises(BootpackError, match="the uefi-arm64 chain's loaders are missing"):
            loaders.find_loaders(["uefi-arm64"], images=[image])
    # an x86-64 image's loaders are not an arm64 chain's
    with pytest.raises(BootpackError, match="the uefi-arm64 chain's loaders are missing"):
        loaders.find_loaders(["uefi-arm64"], images=[loaders.ImageRoot(
            "deb", "x86_64", _debian_root(tmp_path / "whole", loaders.UEFI_ARM64_FILES,
                                          loaders.ARM64_ROOT))])
