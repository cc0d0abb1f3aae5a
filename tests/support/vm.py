"""Boot a QEMU VM (TCG, SeaBIOS + Debian's iPXE ROM) from the network and watch its serial console.

Two networks, as in the field notes: QEMU's user-mode DHCP+TFTP serving a tree (`tftp_root`),
or a tap device the test attached to its own Docker bridge (`tap`). Never the host's network.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

QEMU = "qemu-system-x86_64"


@dataclass
class Boot:
    log: str
    seconds: float  # power-on to the awaited text (or to timeout/exit)
    found: bool


def qemu_available() -> bool:
    return shutil.which(QEMU) is not None and Path("/usr/lib/ipxe/qemu/efi-virtio.rom").exists()


def boot_vm(serial_log: Path, mac: str, until: str, *, tftp_root: Path | None = None,
            tap: str | None = None, timeout: float = 300, memory_mb: int = 1024,
            bootfile: str = "pxelinux.0") -> Boot:
    """Start a VM that PXE-boots, wait until `until` appears on its serial console, stop it."""
    if (tftp_root is None) == (tap is None):
        raise ValueError("give exactly one of tftp_root and tap")
    if tftp_root is not None:
        netdev = f"user,id=n0,tftp={tftp_root},bootfile={bootfile}"
    else:
        netdev = f"tap,id=n0,ifname={tap},script=no,downscript=no"
    serial_log.unlink(missing_ok=True)
    command = [QEMU, "-accel", "tcg", "-m", str(memory_mb), "-display", "none", "-nodefaults",
               "-serial", f"file:{serial_log}", "-boot", "n", "-no-reboot",
               "-netdev", netdev, "-device", f"virtio-net-pci,netdev=n0,mac={mac}"]
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    found = False
    try:
        while time.monotonic() - start < timeout:
            text = serial_log.read_text(errors="replace") if serial_log.exists() else ""
            if until in text:
                found = True
                break
            if proc.poll() is not None:
                break
            time.sleep(0.5)
        seconds = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    log = serial_log.read_text(errors="replace") if serial_log.exists() else ""
    if not found and until in log:
        found = True
    return Boot(log=log, seconds=seconds, found=found)
