"""Images know their architecture: defaults, entries and hosts inherit it, mixed racks validate,
wrong-architecture pairs and kernels are refused with the culprit named."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import pytest

from bootpack.cli import main
from bootpack.errors import BootpackError
from bootpack.spec import load_spec, parse_spec
from bootpack.spec.files import kernel_problem
from bootpack.spec.model import build_host_architecture
from tests.support.specs import ARM64_KERNEL, KERNEL, lab_data, mixed_data, write_spec


def message(data: dict[str, Any]) -> str:
    with pytest.raises(BootpackError) as info:
        parse_spec(data)
    return str(info.value)


def test_an_image_defaults_to_the_build_hosts_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_spec(lab_data()).images["kdev"].architecture == build_host_architecture()
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    spec = parse_spec(lab_data())
    assert spec.images["kdev"].architecture == "arm64"
    assert spec.loaders.chains == ["uefi-arm64"]  # the chains follow the images
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert parse_spec(lab_data()).images["kdev"].architecture == "x86_64"


def test_default_chains_follow_the_images_and_an_explicit_list_stays() -> None:
    assert parse_spec(mixed_data()).loaders.chains == ["bios", "uefi", "uefi-arm64"]
    data = lab_data()
    data["images"]["kdev"]["architecture"] = "x86_64"
    assert parse_spec(data).loaders.chains == ["bios", "uefi"]
    data = mixed_data()
    data["loaders"] = {"chains": ["uefi", "uefi-arm64"]}
    assert parse_spec(data).loaders.chains == ["uefi", "uefi-arm64"]


def test_an_unknown_architecture_is_refused() -> None:
    data = lab_data()
    data["images"]["kdev"]["architecture"] = "aarch64"
    assert "images.kdev.architecture" in message(data) and "'x86_64' or 'arm64'" in message(data)


def test_entries_and_hosts_inherit_their_images_architecture() -> None:
    spec = parse_spec(mixed_data())
    assert spec.entry_architecture(spec.entry("arm")) == "arm64"
    assert spec.entry_architecture(spec.entry("live")) == "x86_64"
    assert [h.name for h in spec.hosts if spec.host_architecture(h) == "arm64"] == ["armnode"]


def test_a_local_entry_fits_every_architecture() -> None:
    data = mixed_data()
    data["entries"].append({"name": "disk", "root": "local"})
    spec = parse_spec(data)
    assert [e.name for e in spec.architecture_entries("arm64")] == ["arm", "disk"]
    assert [e.name for e in spec.architecture_entries("x86_64")] == ["live", "disk"]


def test_the_default_per_architecture() -> None:
    spec = parse_spec(mixed_data())  # menu.default = "live", an x86-64 entry
    default_arm64 = spec.architecture_default("arm64")
    assert default_arm64 is not None and default_arm64.name == "arm"  # first arm64 entry
    default_x86 = spec.architecture_default("x86_64")
    assert default_x86 is not None and default_x86.name == "live"
    data = mixed_data()
    data["menu"]["default"] = "arm"
    spec = parse_spec(data)
    default_arm64, default_x86 = spec.architecture_default("arm64"), spec.architecture_default("x86_64")
    assert default_arm64 is not None and default_arm64.name == "arm"
    assert default_x86 is not None and default_x86.name == "live"


def test_a_host_without_entry_boots_its_architectures_default() -> None:
    data = mixed_data()
    data["hosts"].append({"name": "arm2", "mac": "52:54:00:aa:bb:de", "architecture": "arm64"})
    data["hosts"].append({"name": "arm3", "mac": "52:54:00:aa:bb:df", "chain": "uefi-arm64"})
    spec = parse_spec(data)
    assert spec.host_entry(spec.hosts[2]).name == "arm"
    assert spec.host_entry(spec.hosts[3]).name == "arm"


@pytest.mark.parametrize(("host", "expected"), [
    ({"entry": "arm", "chain": "uefi"},
     "hosts[2] (odd): its chain 'uefi' is x86_64 but its entry 'arm' (images.karm) is arm64"),
    ({"entry": "live", "chain": "uefi-arm64"},
     "hosts[2] (odd): its chain 'uefi-arm64' is arm64 but its entry 'live' (images.kdev) is x86_64"),
    ({"entry": "live", "architecture": "arm64"},
     "hosts[2] (odd): hosts[2].architecture is arm64 but its entry 'live' (images.kdev) is x86_64"),
    ({"architecture": "x86_64", "chain": "uefi-arm64"},
     "hosts[2] (odd): hosts[2].architecture is x86_64 but its chain 'uefi-arm64' is arm64"),
])
def test_a_host_of_one_architecture_with_an_entry_or_chain_of_another_is_refused(
        host: dict[str, str], expected: str) -> None:
    data = mixed_data()
    data["hosts"].append({"name": "odd", "mac": "52:54:00:aa:bb:ee", **host})
    assert expected in message(data)


def test_an_architecture_without_its_chain_and_a_chain_without_entries_are_refused() -> None:
    data = mixed_data()
    data["loaders"] = {"chains": ["bios", "uefi"]}
    assert ("entries[1] (arm): images.karm is arm64 but loaders.chains ['bios', 'uefi'] boots no "
            "arm64 machine; add 'uefi-arm64' to loaders.chains") in message(data)
    data = lab_data()
    data["images"]["kdev"]["architecture"] = "x86_64"
    data["loaders"] = {"chains": ["bios", "uefi", "uefi-arm64"]}
    assert ("loaders.chains: 'uefi-arm64' boots arm64 machines but no entry has an arm64 image"
            in message(data))


def test_a_host_of_an_architecture_without_entries_is_refused() -> None:
    data = lab_data()
    data["images"]["kdev"]["architecture"] = "x86_64"
    data["hosts"].append({"name": "lonely", "mac": "52:54:00:aa:bb:ee", "architecture": "arm64"})
    assert "hosts[1] (lonely): no entry boots on arm64" in message(data)


ZBOOT_ARM64 = (b"MZ\0\0zimg" + b"\0" * 0x34 + struct.pack("<I", 0x40) + b"PE\0\0"
               + struct.pack("<H", 0xAA64) + b"\0" * 0x40)


def test_the_kernel_check_knows_each_architectures_format() -> None:
    assert kernel_problem(KERNEL, "x86_64") is None
    assert kernel_problem(ARM64_KERNEL, "arm64") is None
    assert kernel_problem(ZBOOT_ARM64, "arm64") is None  # EFI zboot (compressed) arm64 kernel
    assert "is an x86-64 bzImage, but the image's architecture is 'arm64'" in str(
        kernel_problem(KERNEL, "arm64"))
    assert "is an arm64 kernel, but the image's architecture is 'x86_64'" in str(
        kernel_problem(ARM64_KERNEL, "x86_64"))
    assert "is an arm64 kernel" in str(kernel_problem(ZBOOT_ARM64, "x86_64"))
    assert "gzip-compressed arm64 Image" in str(kernel_problem(gzip.compress(ARM64_KERNEL), "arm64"))
    assert "arch/arm64/boot/Image" in str(kernel_problem(b"\x7fELF" + b"\0" * 0x300, "arm64"))


def test_load_refuses_a_kernel_of_the_wrong_architecture(tmp_path: Path) -> None:
    data = mixed_data()
    data["images"]["karm"]["kernel"] = "artifacts/vmlinuz"  # the x86 stand-in
    with pytest.raises(BootpackError) as info:
        load_spec(write_spec(tmp_path, data))
    assert ("images.karm.kernel: 'artifacts/vmlinuz' is an x86-64 bzImage, but the image's "
            "architecture is 'arm64'") in str(info.value)
    data = mixed_data()
    load_spec(write_spec(tmp_path, data))  # the right kernels pass


def test_validate_refuses_wrong_architecture_pairs_and_kernels_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As a user meets them: `bootpack validate` names the culprit and the fix, exit 2, no
    traceback; the mixed rack itself validates."""
    assert main(["validate", str(write_spec(tmp_path / "ok", mixed_data()))]) == 0
    data = mixed_data()
    data["hosts"].append({"name": "odd", "mac": "52:54:00:aa:bb:ee", "entry": "arm", "chain": "uefi"})
    data["hosts"].append({"name": "odd2", "mac": "52:54:00:aa:bb:ef", "entry": "live",
                          "architecture": "arm64"})
    capsys.readouterr()
    assert main(["validate", str(write_spec(tmp_path / "pair", data))]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("bootpack: error: ")
    assert "hosts[2] (odd): its chain 'uefi' is x86_64 but its entry 'arm' (images.karm) is arm64" in err
    assert "hosts[3] (odd2): hosts[3].architecture is arm64 but its entry 'live'" in err  # both at once
    data = mixed_data()
    data["images"]["kdev"]["kernel"] = "artifacts/Image"  # an arm64 Image for the x86-64 image
    assert main(["validate", str(write_spec(tmp_path / "kernel", data))]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert ("images.kdev.kernel: 'artifacts/Image' is an arm64 kernel, but the image's "
            "architecture is 'x86_64'") in err
