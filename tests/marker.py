"""A tiny marker initramfs: busybox + an /init that prints the kernel command line and powers off.

Booting Debian's kernel with it takes seconds under TCG, which makes it the fast way to prove that
menus and per-host configs select the right entry. Also used by scripts/example-artifacts so the
examples build on a fresh machine. The cpio is written here (newc, sorted, fixed times) so the
result is byte-identical on every run.

Run as `python -m tests.marker DIR` to write DIR/vmlinuz and DIR/initrd.img.
"""

from __future__ import annotations

import gzip
import io
import shutil
import sys
from pathlib import Path

MARKER = "BOOTPACK-MARKER"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static

INIT = f"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
echo "{MARKER} cmdline: $(/bin/busybox cat /proc/cmdline)" > /dev/ttyS0
echo "{MARKER} done" > /dev/ttyS0
/bin/busybox poweroff -f
"""


def _newc(name: str, mode: int, data: bytes = b"", ino: int = 0) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    header = b"070701" + b"".join(f"{f:08x}".encode() for f in fields)
    entry = header + name.encode() + b"\0"
    entry += b"\0" * (-len(entry) % 4)
    entry += data + b"\0" * (-len(data) % 4)
    return entry


def marker_initramfs(busybox: Path = BUSYBOX) -> bytes:
    """gzip'd newc cpio with /init, /bin/busybox and /dev/console."""
    if not busybox.is_file():
        raise FileNotFoundError(f"{busybox} missing: apt-get install busybox-static")
    entries = [
        _newc("bin", 0o040755, ino=1),
        _newc("bin/busybox", 0o100755, busybox.read_bytes(), ino=2),
        _newc("dev", 0o040755, ino=3),
        _newc("init", 0o100755, INIT.encode(), ino=4),
        _newc("proc", 0o040755, ino=5),
        _newc("sys", 0o040755, ino=6),
        _newc("TRAILER!!!", 0),
    ]
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(b"".join(entries))
    return raw.getvalue()


def debian_kernel() -> Path:
    """The newest Debian kernel in /boot (package linux-image-amd64)."""
    kernels = sorted(Path("/boot").glob("vmlinuz-*"))
    if not kernels:
        raise FileNotFoundError("no /boot/vmlinuz-*: apt-get install linux-image-amd64")
    return kernels[-1]


def write_artifacts(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    kernel, initrd = folder / "vmlinuz", folder / "initrd.img"
    shutil.copyfile(debian_kernel(), kernel)
    initrd.write_bytes(marker_initramfs())
    return kernel, initrd


if __name__ == "__main__":
    for path in write_artifacts(Path(sys.argv[1])):
        print(path)
