"""Real UEFI network boots: QEMU (TCG) with OVMF's own PXE client (the NIC's iPXE ROM is off)
loads bootx64.efi (Debian's signed shim) from the built tree over QEMU's user-mode TFTP; shim
loads grubx64.efi (Debian's signed network GRUB), which reads grub/grub.cfg, dispatches a known
MAC to its host file or shows the menu, and boots Debian's kernel with the marker initramfs.

With Secure Boot off GRUB loads http.mod and fetches kernel and initrd over HTTP (a small server
on the host's loopback, which the VM reaches as 10.0.2.2); with Secure Boot on (OVMF with
Microsoft's keys) GRUB may not load modules, so the same chain falls back to TFTP, boots the
signed kernel and the kernel itself reports Secure Boot enabled; the same kernel with its
signature removed is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.spec.test_secureboot import unsigned_copy
from tests.support.marker import MARKER
from tests.support.vm import Boot, Firmware, boot_vm, ovmf_available, qemu_available

pytestmark = [pytest.mark.boot,
              pytest.mark.skipif(not (qemu_available() and ovmf_available()),
                                 reason="needs qemu-system-x86 and ovmf")]

DONE = f"{MARKER} done"
KNOWN, UNKNOWN = "52:54:00:aa:bb:cc", "52:54:00:12:34:56"


def boot(tree: Path, tmp_path: Path, mac: str, firmware: Firmware, label: str,
         until: str = DONE, stop_on: str | None = None) -> Boot:
    result = boot_vm(tmp_path / "serial.log", mac, until, tftp_root=tree, bootfile="bootx64.efi",
                     firmware=firmware, timeout=240, stop_on=stop_on)
    print(f"\n{label}: {'reached' if result.found else 'NO'} {until!r} after {result.seconds:.1f} s")
    assert result.found, result.log[-4000:]
    return result


def marker(log: str, what: str) -> str:
    line = next(line for line in log.splitlines() if line.startswith(f"{MARKER} {what}:"))
    text = line.removeprefix(f"{MARKER} {what}:").strip()
    if what == "cmdline":
        # entries report `up` by default (report_up): the same word GRUB and pxelinux both pass
        words = text.split()
        reports = [w for w in words if w.startswith("bootpack.report=http://10.0.2.2")]
        assert len(reports) == 1 and "/bootpack/up/" in reports[0], text
        text = " ".join(w for w in words if w not in reports)
    return text


def test_known_host_boots_its_entry_with_its_cmdline(boot_tree: Path, tmp_path: Path,
                                                     http_log: list[str]) -> None:
    http_log.clear()
    result = boot(boot_tree, tmp_path, KNOWN, "uefi", "UEFI known host")
    words = marker(result.log, "cmdline").split()
    port = json.loads((boot_tree.parent / "spec.json").read_text())["server"]["http_port"]
    assert words == [f"BOOT_IMAGE=(http,10.0.2.2:{port})/images/kdev/vmlinuz",
                     "console=ttyS0,115200", "node=1"]
    assert marker(result.log, "secureboot") == "Secure boot disabled"
    # Secure Boot off: GRUB loaded http.mod (over TFTP) and fetched kernel and initrd over HTTP
    assert "/images/kdev/vmlinuz" in http_log and "/images/kdev/initrd.img" in http_log


def test_unknown_host_boots_the_menu_default(boot_tree: Path, tmp_path: Path) -> None:
    result = boot(boot_tree, tmp_path, UNKNOWN, "uefi", "UEFI unknown host (menu, 1 s)")
    words = marker(result.log, "cmdline").split()
    assert words[1:] == ["console=ttyS0,115200"]  # `live`, not `other`


def test_secure_boot_boots_the_signed_chain(boot_tree: Path, tmp_path: Path,
                                            http_log: list[str]) -> None:
    http_log.clear()
    result = boot(boot_tree, tmp_path, KNOWN, "secureboot", "UEFI Secure Boot known host")
    # GRUB under Secure Boot (lockdown) does not even try http.mod: TFTP, and no error on the way
    assert http_log == [] and "error:" not in result.log
    assert marker(result.log, "cmdline").split()[0] == "BOOT_IMAGE=/images/kdev/vmlinuz"
    assert "EFI stub: UEFI Secure Boot is enabled." in result.log
    assert marker(result.log, "secureboot") == "Secure boot enabled"  # the kernel's own dmesg
    assert marker(result.log, "cmdline").split()[1:] == ["console=ttyS0,115200", "node=1"]


def test_secure_boot_refuses_an_unsigned_kernel(boot_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tftpboot"
    shutil.copytree(boot_tree, tree)
    kernel = tree / "images" / "kdev" / "vmlinuz"
    kernel.unlink()
    unsigned_copy(boot_tree / "images" / "kdev" / "vmlinuz", kernel)
    result = boot(tree, tmp_path, KNOWN, "secureboot", "UEFI Secure Boot, unsigned kernel",
                  until="bad shim signature", stop_on=DONE)
    assert DONE not in result.log and "Linux version" not in result.log
