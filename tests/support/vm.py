"""Boot a QEMU VM from the network and watch its serial console.

Firmware: "bios" (SeaBIOS + Debian's iPXE ROM), "uefi" (OVMF, Secure Boot off), "secureboot"
(OVMF with Microsoft's keys enrolled, SMM, secure pflash) or "arm64" (qemu-system-aarch64, the
virt machine with a Cortex-A57, 1.7x faster under TCG than `-cpu max`, and AAVMF from
qemu-efi-aarch64, which sends DHCP option 93 = 11). For UEFI the NIC gets `romfile=`, so
OVMF's own PXE client boots, as on real machines (QEMU's iPXE ROM would otherwise do it and,
being unsigned, break Secure Boot).

Two networks, as in the field notes: QEMU's user-mode DHCP+TFTP serving a tree (`tftp_root`),
or a tap device the test attached to its own Docker bridge (`tap`). Never the host's network.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

QEMU = "qemu-system-x86_64"
QEMU_ARM64 = "qemu-system-aarch64"
Firmware = Literal["bios", "uefi", "secureboot", "arm64"]
OVMF = Path("/usr/share/OVMF")
AAVMF = Path("/usr/share/AAVMF")
# code, vars template
OVMF_FILES = {"uefi": (OVMF / "OVMF_CODE_4M.fd", OVMF / "OVMF_VARS_4M.fd"),
              "secureboot": (OVMF / "OVMF_CODE_4M.ms.fd", OVMF / "OVMF_VARS_4M.ms.fd"),
              "arm64": (AAVMF / "AAVMF_CODE.fd", AAVMF / "AAVMF_VARS.fd")}


@dataclass
class Boot:
    log: str
    seconds: float  # power-on to the awaited text (or to timeout/exit)
    found: bool


def qemu_available() -> bool:
    return shutil.which(QEMU) is not None and Path("/usr/lib/ipxe/qemu/efi-virtio.rom").exists()


def ovmf_available() -> bool:
    return all(p.is_file() for name, pair in OVMF_FILES.items() if name != "arm64" for p in pair)


def arm64_available() -> bool:
    """qemu-system-arm and qemu-efi-aarch64 (AAVMF) are installed."""
    return shutil.which(QEMU_ARM64) is not None and all(p.is_file() for p in OVMF_FILES["arm64"])


def firmware_args(firmware: Firmware, vars_copy: Path) -> list[str]:
    """QEMU arguments for the firmware; UEFI gets its own writable copy of the variable store."""
    if firmware == "bios":
        return []
    code, template = OVMF_FILES[firmware]
    shutil.copyfile(template, vars_copy)
    if firmware == "arm64":
        machine = ["-machine", "virt", "-cpu", "cortex-a57"]
    elif firmware == "secureboot":
        machine = ["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on"]
    else:
        machine = ["-machine", "q35"]
    return [*machine,
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]


# OVMF's fw_cfg switches (present in Debian's 2022.11 build): no PXE over IPv4 or IPv6, so the
# firmware goes straight to UEFI HTTP boot instead of failing PXE first (about 2 minutes).
HTTP_BOOT_ONLY = ("-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
                  "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")


def boot_vm(serial_log: Path, mac: str, until: str, *, tftp_root: Path | None = None,
            tap: str | None = None, timeout: float = 300, memory_mb: int = 1024,
            bootfile: str = "pxelinux.0", firmware: Firmware = "bios",
            stop_on: str | None = None, extra_args: tuple[str, ...] = (),
            linger: Callable[[], bool] | None = None) -> Boot:
    """Start a VM that PXE-boots, wait until `until` appears on its serial console, stop it.

    `stop_on`: text that ends the wait early as a failure (e.g. a refusal message);
    `extra_args`: more QEMU arguments (e.g. HTTP_BOOT_ONLY)."""
    if (tftp_root is None) == (tap is None):
        raise ValueError("give exactly one of tftp_root and tap")
    if tftp_root is not None:
        netdev = f"user,id=n0,tftp={tftp_root},bootfile={bootfile}"
    else:
        netdev = f"tap,id=n0,ifname={tap},script=no,downscript=no"
    serial_log.unlink(missing_ok=True)
    nic = f"virtio-net-pci,netdev=n0,mac={mac}" + (",romfile=" if firmware != "bios" else "")
    command = [QEMU_ARM64 if firmware == "arm64" else QEMU, "-accel", "tcg", "-m", str(memory_mb),
               "-display", "none", "-nodefaults",
               *firmware_args(firmware, serial_log.with_suffix(".vars.fd")),
               "-serial", f"file:{serial_log}",
               *(["-boot", "n"] if firmware != "arm64" else []),  # AAVMF tries the network itself
               "-no-reboot",
               "-netdev", netdev, "-device", nic, *extra_args]
    boot, reset_silently = _run_vm(command, serial_log, until, timeout, stop_on, linger)
    if reset_silently:
        # The firmware or the loader gave up and reset (QEMU exits: -no-reboot) before a single
        # serial line: seen about once in 15 BIOS boots through the appliance since lpxelinux.0
        # (its lwIP stack) became the BIOS loader, never twice in a row. Once more, and say so.
        print(f"\nVM {mac} reset after {boot.seconds:.0f} s with no serial output; booting it again")
        boot, _ = _run_vm(command, serial_log, until, timeout, stop_on, linger)
    return boot


def _run_vm(command: list[str], serial_log: Path, until: str, timeout: float,
            stop_on: str | None, linger: Callable[[], bool] | None = None) -> tuple[Boot, bool]:
    """One QEMU run; also says whether it ended by itself without ever writing to the console.
    `linger`: once `until` is seen, the VM runs on until it returns True (60 s at most)."""
    serial_log.unlink(missing_ok=True)
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    found = False
    try:
        while time.monotonic() - start < timeout:
            text = serial_log.read_text(errors="replace") if serial_log.exists() else ""
            if until in text:
                found = True
                end = time.monotonic() + 60
                while linger is not None and not linger() and time.monotonic() < end:
                    time.sleep(0.5)
                break
            if stop_on is not None and stop_on in text:
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
    exited = proc.returncode is not None and seconds < timeout and not found
    return Boot(log=log, seconds=seconds, found=found), exited and not log.strip()
