"""Checks of the input files a spec names: each is a regular file of the kind its key says.

A kernel must be a Linux kernel image the boot loader can load for its image's architecture
(x86-64: a bzImage; arm64: an Image with its EFI/PE header, or an EFI zboot image), an initrd a
cpio archive (plain, as the early-microcode concatenation starts, or compressed). Only the first
bytes are read, so a path such as /dev/zero cannot make a check read forever. Each problem names
the spec key and says what to do.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path

from .model import Architecture

# Kernel file systems: a path under them is never a file to put in a bundle.
SPECIAL_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))
NOT_FOUND = "not found"
HEAD_BYTES = 0x240  # enough for the bzImage setup header (0x202) and the arm64 Image magic (0x38)
ARM64_MAGIC = b"ARM\x64"  # at 0x38 of an arm64 Image
ZBOOT_MAGIC = b"zimg"  # at 4 of an EFI zboot image (CONFIG_EFI_ZBOOT): a PE app that decompresses
PE_MACHINE = {0xAA64: "arm64", 0x8664: "x86_64"}  # IMAGE_FILE_MACHINE_* in the PE header

_CPIO = (b"070701", b"070702")
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\xfd7zXZ\x00", "xz"),
    (b"\x02\x21\x4c\x18", "lz4"), (b"\x04\x22\x4d\x18", "lz4"), (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "lzma"), (b"\x89LZO\x00", "lzo"),
)


def kind_of(mode: int) -> str:
    """'a directory', 'a FIFO', ...: what a file that is not a regular file is."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "not a regular file"


def _under_special_tree(path: Path) -> Path | None:
    for tree in SPECIAL_TREES:
        if path == tree or tree in path.parents:
            return tree
    return None


def regular_file_problem(path: Path) -> str | None:
    """Why path cannot be read as a regular input file ('is a directory', ...; NOT_FOUND), or
    None. The phrase reads after the file's name."""
    tree = _under_special_tree(path.resolve())
    if tree is not None:
        return f"is under {tree}, a kernel file system, not a file to boot"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return NOT_FOUND
    except OSError as exc:
        return f"cannot be read ({path}): {exc.strerror or exc}"
    if not stat.S_ISREG(mode):
        return f"is {kind_of(mode)} ({path}), not a file"
    return None


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    """The first bytes of a regular file (O_NONBLOCK: a FIFO swapped in cannot block us)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
        return os.read(fd, size)
    finally:
        os.close(fd)


def _pe_machine(head: bytes) -> str | None:
    """The architecture a PE file's header names, if these bytes reach it."""
    if len(head) < 0x40:
        return None
    offset = struct.unpack_from("<I", head, 0x3C)[0]
    if head[offset:offset + 4] != b"PE\0\0" or len(head) < offset + 6:
        return None
    return PE_MACHINE.get(struct.unpack_from("<H", head, offset + 4)[0])


def kernel_architecture(head: bytes) -> str | None:
    """'x86_64' (bzImage), 'arm64' (Image or zboot), or None: not a kernel a loader boots."""
    if head[0x202:0x206] == b"HdrS":
        return "x86_64"  # bzImage (with or without an EFI stub)
    if head[:2] == b"MZ" and head[0x38:0x3C] == ARM64_MAGIC:
        return "arm64"  # Image with its EFI/PE header
    if head[:2] == b"MZ" and head[4:8] == ZBOOT_MAGIC:
        return _pe_machine(head)  # EFI zboot: the PE header says for which CPU
    return None


def _gzip_arm64_image(head: bytes) -> bool:
    """A gzip'd arm64 Image (Image.gz): GRUB's arm64 `linux` loads only the Image itself."""
    try:
        start = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 0x40)
    except zlib.error:
        return False
    return start[:2] == b"MZ" and start[0x38:0x3C] == ARM64_MAGIC


def kernel_problem(head: bytes, architecture: Architecture = "x86_64") -> str | None:
    """Why these first bytes are not a Linux kernel image that boots on `architecture`, or None."""
    found = kernel_architecture(head)
    if found == architecture:
        return None
    fix = ("the image's architecture is set by images.NAME.architecture; point kernel at "
           + ("an arm64 Image (arch/arm64/boot/Image, or Debian's /boot/vmlinuz-VERSION-arm64)"
              if architecture == "arm64" else
              "an x86-64 bzImage (arch/x86/boot/bzImage, or /boot/vmlinuz-VERSION)"))
    if found is not None:
        what = "an x86-64 bzImage" if found == "x86_64" else "an arm64 kernel"
        return f"is {what}, but the image's architecture is {architecture!r}; {fix}"
    if head[:2] == b"MZ" and head[4:8] == ZBOOT_MAGIC:
        return f"is an EFI zboot kernel for another CPU than {architecture}; {fix}"
    if head[:4] == b"\x7fELF":
        return ("is an ELF vmlinux, which boot loaders cannot load; use the image the kernel "
                "build makes next to it: "
                + ("arch/arm64/boot/Image" if architecture == "arm64" else "arch/x86/boot/bzImage"))
    if _gzip_arm64_image(head):
        return ("is a gzip-compressed arm64 Image, which GRUB cannot boot; decompress it "
                "(zcat Image.gz > Image) or build an EFI zboot kernel (CONFIG_EFI_ZBOOT)")
    if head[:6] in _CPIO or any(head.startswith(magic) for magic, _ in _COMPRESSED):
        return "looks like an initrd (cpio or compressed data), not a kernel; swap kernel and initrd?"
    if architecture == "arm64":
        return ("is not an arm64 Linux kernel image (no 'ARM\\x64' magic at offset 0x38, no EFI "
                f"zboot header); {fix}")
    return ("is not a Linux kernel image (no bzImage 'HdrS' header at offset 0x202); point it at "
            "the kernel's bzImage, e.g. arch/x86/boot/bzImage or /boot/vmlinuz-VERSION")


def initrd_problem(head: bytes) -> str | None:
    """Why these first bytes are not an initramfs (cpio, plain or compressed), or None."""
    if head[:6] in _CPIO:
        return None  # newc cpio, also the start of an early-microcode concatenation
    if any(head.startswith(magic) for magic, _ in _COMPRESSED):
        return None
    if head[0x202:0x206] == b"HdrS" or head[:4] == b"\x7fELF":
        return "is a kernel, not an initrd; swap kernel and initrd?"
    if not head:
        return "is empty; an initrd is a cpio archive"
    return ("is not an initramfs: expected a newc cpio archive (070701), plain or compressed "
            "with gzip, zstd, xz, lz4, bzip2 or lzma; build it with dracut, mkinitramfs or "
            "`cpio -H newc`")


def input_file_problem(path: Path, key: str,
                       architecture: Architecture = "x86_64") -> str | None:
    """What is wrong with the file named by images.NAME.<key>, or None."""
    problem = regular_file_problem(path)
    if problem is not None or key not in ("kernel", "initrd"):
        return problem
    try:
        head = read_head(path)
    except OSError as exc:
        return f"cannot be read ({path}): {exc.strerror or exc}"
    return kernel_problem(head, architecture) if key == "kernel" else initrd_problem(head)
