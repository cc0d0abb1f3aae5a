"""A tiny marker initramfs: busybox + an /init that prints the kernel command line and powers off.

Booting Debian's kernel with it takes seconds under TCG, which makes it the fast way to prove that
menus and per-host configs select the right entry. Also used by scripts/example-artifacts so the
examples build on a fresh machine. The cpio comes from bootpack's own writer (newc, sorted,
fixed times), so the result is byte-identical on every run.

The arm64 marker is the same /init with Debian's arm64 busybox-static, printing to the PL011
console (ttyAMA0) of QEMU's virt machine, booted by Debian's arm64 kernel: scripts/install
unpacks both under bootpack.loaders.ARM64_ROOT.

Run as `python -m tests.support.marker DIR` to write DIR/vmlinuz and DIR/initrd.img.
"""

from __future__ import annotations

import gzip
import io
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from bootpack.images.cpio import cpio_chunks
from bootpack.loaders import ARM64_ROOT

MARKER = "BOOTPACK-MARKER"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
ARM64_BUSYBOX = ARM64_ROOT / "bin" / "busybox"  # busybox-static:arm64, unpacked by scripts/install
ARM64_CONSOLE = "ttyAMA0"  # the virt machine's PL011 UART


def init_script(console: str = "ttyS0") -> str:
    return f"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
echo "{MARKER} cmdline: $(/bin/busybox cat /proc/cmdline)" > /dev/{console}
echo "{MARKER} arch: $(/bin/busybox uname -m)" > /dev/{console}
echo "{MARKER} secureboot: $(/bin/busybox dmesg | /bin/busybox grep -o 'Secure boot [a-z]*')" > /dev/{console}
echo "{MARKER} done" > /dev/{console}
/bin/busybox poweroff -f
"""


INIT = init_script()


# path -> (mode, content); a mode with S_IFDIR makes a folder.
Entries = dict[str, tuple[int, bytes]]


def pack_initramfs(entries: Entries) -> bytes:
    """gzip'd newc cpio of `entries`, written by bootpack's own cpio writer (sorted, fixed times)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, (mode, data) in sorted(entries.items()):
            path = root / name
            if stat.S_ISDIR(mode):
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            path.chmod(stat.S_IMODE(mode))
        raw = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            for chunk in cpio_chunks(root, 0):
                gz.write(chunk)
        return raw.getvalue()


def busybox_bytes(busybox: Path = BUSYBOX) -> bytes:
    if not busybox.is_file():
        raise FileNotFoundError(f"{busybox} missing: apt-get install busybox-static")
    return busybox.read_bytes()


DIR = 0o040755


def marker_initramfs(busybox: Path = BUSYBOX, console: str = "ttyS0") -> bytes:
    """gzip'd newc cpio with /init and /bin/busybox."""
    return pack_initramfs({
        "bin": (DIR, b""), "bin/busybox": (0o100755, busybox_bytes(busybox)), "dev": (DIR, b""),
        "init": (0o100755, init_script(console).encode()), "proc": (DIR, b""), "sys": (DIR, b""),
    })


def debian_kernel() -> Path:
    """The newest Debian kernel in /boot (package linux-image-amd64)."""
    kernels = sorted(Path("/boot").glob("vmlinuz-*"))
    if not kernels:
        raise FileNotFoundError("no /boot/vmlinuz-*: apt-get install linux-image-amd64")
    return kernels[-1]


def debian_arm64_kernel() -> Path:
    """Debian's arm64 kernel (linux-image-arm64:arm64), unpacked by scripts/install --test."""
    kernels = sorted((ARM64_ROOT / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise FileNotFoundError(f"no {ARM64_ROOT}/boot/vmlinuz-*: run scripts/install --test")
    return kernels[-1]


def write_arm64_artifacts(folder: Path) -> tuple[Path, Path]:
    """folder/Image (Debian's arm64 kernel) and folder/initrd-arm64.img (the arm64 marker)."""
    folder.mkdir(parents=True, exist_ok=True)
    kernel, initrd = folder / "Image", folder / "initrd-arm64.img"
    shutil.copyfile(debian_arm64_kernel(), kernel)
    initrd.write_bytes(marker_initramfs(ARM64_BUSYBOX, ARM64_CONSOLE))
    return kernel, initrd


def write_artifacts(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    kernel, initrd = folder / "vmlinuz", folder / "initrd.img"
    shutil.copyfile(debian_kernel(), kernel)
    initrd.write_bytes(marker_initramfs())
    return kernel, initrd


if __name__ == "__main__":
    for path in write_artifacts(Path(sys.argv[1])):
        print(path)
