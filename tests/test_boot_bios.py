"""A real PXE boot: QEMU (TCG, SeaBIOS + iPXE) loads pxelinux.0 (Debian's lpxelinux.0) from the
built tree over QEMU's user-mode TFTP, pxelinux picks the host file or the menu and fetches
kernel and initrd over HTTP (a server on the host's loopback, 10.0.2.2 to the VM), and Debian's
kernel boots the marker initramfs, which prints its command line on the serial console.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.marker import MARKER
from tests.support.vm import boot_vm, qemu_available

pytestmark = [pytest.mark.boot,
              pytest.mark.skipif(not qemu_available(), reason="needs qemu-system-x86 and ipxe-qemu")]

DONE = f"{MARKER} done"


@pytest.fixture(scope="module")
def tree(boot_tree: Path) -> Path:
    return boot_tree


def cmdline(log: str) -> str:
    line = next(line for line in log.splitlines() if line.startswith(f"{MARKER} cmdline:"))
    return line.removeprefix(f"{MARKER} cmdline:").strip()


def test_known_host_boots_its_entry_with_its_cmdline(tree: Path, tmp_path: Path,
                                                     http_log: list[str]) -> None:
    http_log.clear()
    boot = boot_vm(tmp_path / "serial.log", "52:54:00:aa:bb:cc", DONE, tftp_root=tree, timeout=240)
    assert boot.found, boot.log[-3000:]
    print(f"node1 boot to marker: {boot.seconds:.1f} s")
    words = cmdline(boot.log).split()
    port = json.loads((tree.parent / "spec.json").read_text())["server"]["http_port"]
    assert f"BOOT_IMAGE=http://10.0.2.2:{port}/images/kdev/vmlinuz" in words
    # kernel and initrd came over HTTP (lpxelinux's own TCP/IP stack), not TFTP
    assert "/images/kdev/vmlinuz" in http_log and "/images/kdev/initrd.img" in http_log
    assert words[1:3] == ["console=ttyS0,115200", "node=1"]
    assert "entry=other" not in words


def test_unknown_host_boots_the_menu_default(tree: Path, tmp_path: Path,
                                             http_log: list[str]) -> None:
    boot = boot_vm(tmp_path / "serial.log", "52:54:00:12:34:56", DONE, tftp_root=tree, timeout=240)
    assert boot.found, boot.log[-3000:]
    print(f"unknown host boot to marker: {boot.seconds:.1f} s")
    words = cmdline(boot.log).split()
    assert words[1] == "console=ttyS0,115200"
    assert "node=1" not in words and "entry=other" not in words
