"""Real arm64 UEFI network boots: qemu-system-aarch64 (virt, Cortex-A57, TCG) with AAVMF's own
PXE client loads bootaa64.efi (Debian's signed arm64 shim) from a mixed-rack bundle over QEMU's
user-mode TFTP; shim loads grubaa64.efi (Debian's signed arm64 network GRUB), which reads the
same grub/grub.cfg as x86-64 GRUB, dispatches a known MAC to its host file or sends arm64 on to
its own menu, and boots Debian's arm64 kernel with the arm64 marker initramfs.

The spec's menu.default is an x86-64 entry: an unknown arm64 client must boot the first arm64
entry instead, never the x86 kernel.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.marker import MARKER, write_arm64_artifacts, write_artifacts
from tests.support.specs import mixed_data, write_spec
from tests.support.vm import Boot, arm64_available, boot_vm, ovmf_available

pytestmark = [pytest.mark.boot,
              pytest.mark.skipif(not arm64_available(),
                                 reason="needs qemu-system-arm and qemu-efi-aarch64")]

DONE = f"{MARKER} done"
KNOWN, UNKNOWN = "52:54:00:aa:bb:dd", "52:54:00:12:34:57"  # armnode (mixed_data), anyone


@pytest.fixture(scope="module")
def mixed_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mixed rack (x86-64 `live` + arm64 `arm`, menu.default = live) built with Debian's
    kernels and the marker initramfs of each architecture. Returns the bundle's tftpboot/."""
    from bootpack.cli import main

    folder = tmp_path_factory.mktemp("arm64")
    data = mixed_data()
    data["menu"]["timeout"] = 1
    data["images"]["karm"]["initrd"] = "artifacts/initrd-arm64.img"
    data["entries"].append({"name": "arm-other", "image": "karm", "root": "ramdisk",
                            "cmdline": "console=ttyAMA0 entry=arm-other"})
    data["hosts"][1]["cmdline"] = "node=arm"
    spec = write_spec(folder, data, artifacts=False)
    write_artifacts(folder / "artifacts")
    write_arm64_artifacts(folder / "artifacts")
    started = time.monotonic()
    assert main(["-q", "build", str(spec), "--output", str(folder / "out")]) == 0
    print(f"build: {time.monotonic() - started:.1f} s")
    return folder / "out" / "tftpboot"


def boot(tree: Path, tmp_path: Path, mac: str, label: str) -> Boot:
    result = boot_vm(tmp_path / "serial.log", mac, DONE, tftp_root=tree, bootfile="bootaa64.efi",
                     firmware="arm64", timeout=300)
    print(f"\n{label}: {'reached' if result.found else 'NO'} marker after {result.seconds:.1f} s")
    assert result.found, result.log[-4000:]
    return result


def marker(log: str, what: str) -> list[str]:
    line = next(line for line in log.splitlines() if line.startswith(f"{MARKER} {what}:"))
    return [w for w in line.removeprefix(f"{MARKER} {what}:").split()
            if not w.startswith("bootpack.report=")]


def test_the_mixed_bundle_carries_both_loaders(mixed_tree: Path) -> None:
    for name in ("bootx64.efi", "grubx64.efi", "bootaa64.efi", "grubaa64.efi", "pxelinux.0",
                 "grub/arm64-efi/http.mod", "grub/x86_64-efi/http.mod", "grub/arm64-efi/menu.cfg"):
        assert (mixed_tree / name).is_file(), name


def test_known_arm64_host_boots_its_entry(mixed_tree: Path, tmp_path: Path) -> None:
    result = boot(mixed_tree, tmp_path, KNOWN, "arm64 known host")
    assert marker(result.log, "arch") == ["aarch64"]
    # no HTTP server here: GRUB falls back to TFTP from the same server
    assert marker(result.log, "cmdline") == ["BOOT_IMAGE=/images/karm/vmlinuz", "console=ttyAMA0",
                                             "node=arm"]


def test_unknown_arm64_host_boots_the_first_arm64_entry(mixed_tree: Path, tmp_path: Path) -> None:
    result = boot(mixed_tree, tmp_path, UNKNOWN, "arm64 unknown host (menu, 1 s)")
    assert marker(result.log, "arch") == ["aarch64"]
    # menu.default (`live`) is x86-64: arm64's default is its first entry, `arm`, not `arm-other`
    assert marker(result.log, "cmdline")[1:] == ["console=ttyAMA0"]


def test_unknown_x86_uefi_host_skips_the_arm64_menu(mixed_tree: Path, tmp_path: Path) -> None:
    """The same grub.cfg read by x86-64 GRUB: `$grub_cpu` is x86_64, so no arm64 menu; the x86
    menu's default (`live`) boots."""
    if not ovmf_available():
        pytest.fail("OVMF is needed (scripts/install --test)")
    result = boot_vm(tmp_path / "serial.log", "52:54:00:12:34:58", DONE, tftp_root=mixed_tree,
                     bootfile="bootx64.efi", firmware="uefi", timeout=300)
    print(f"\nx86-64 UEFI unknown host, mixed bundle: marker after {result.seconds:.1f} s")
    assert result.found, result.log[-4000:]
    assert marker(result.log, "arch") == ["x86_64"]
    assert marker(result.log, "cmdline")[1:] == ["console=ttyS0,115200"]
