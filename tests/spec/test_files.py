"""The files a spec names are of their kind: a bootable kernel, a cpio initrd, a regular file."""

from __future__ import annotations

import gzip
import os
import socket
from pathlib import Path

import pytest

from bootpack.errors import BootpackError
from bootpack.spec import load_spec
from bootpack.spec.files import initrd_problem, kernel_problem
from tests.support.specs import INITRD, KERNEL, lab_data, write_spec

ARM64 = b"MZ" + b"\0" * 0x36 + b"ARM\x64" + b"\0" * 0x40
ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 0x300


def problems_with(tmp_path: Path, kernel: str | None = None, initrd: str | None = None) -> str:
    data = lab_data()
    if kernel is not None:
        data["images"]["kdev"]["kernel"] = kernel
    if initrd is not None:
        data["images"]["kdev"]["initrd"] = initrd
    with pytest.raises(BootpackError) as info:
        load_spec(write_spec(tmp_path, data))
    return str(info.value)


def test_stand_ins_and_real_headers_pass() -> None:
    assert kernel_problem(KERNEL) is None
    assert kernel_problem(ARM64, "arm64") is None
    assert initrd_problem(INITRD) is None
    assert initrd_problem(b"070702" + b"0" * 100) is None
    for compressed in (gzip.compress(b"x"), b"\x28\xb5\x2f\xfd" + b"\0" * 8, b"\xfd7zXZ\x00\0\0",
                       b"\x02\x21\x4c\x18", b"BZh91AY", b"\x5d\x00\x00\x80\x00"):
        assert initrd_problem(compressed) is None, compressed


def test_vmlinux_is_refused_with_the_bzimage_path(tmp_path: Path) -> None:
    (tmp_path / "vmlinux").write_bytes(ELF)
    text = problems_with(tmp_path, kernel="vmlinux")
    assert "images.kdev.kernel: 'vmlinux' is an ELF vmlinux" in text
    assert "arch/x86/boot/bzImage" in text


def test_a_file_that_is_no_kernel_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    text = problems_with(tmp_path, kernel="notes.txt")
    assert "images.kdev.kernel: 'notes.txt' is not a Linux kernel image (no bzImage 'HdrS'" in text


def test_swapped_kernel_and_initrd_are_named(tmp_path: Path) -> None:
    text = problems_with(tmp_path, kernel="artifacts/initrd.img", initrd="artifacts/vmlinuz")
    assert "images.kdev.kernel: 'artifacts/initrd.img' looks like an initrd" in text
    assert "images.kdev.initrd: 'artifacts/vmlinuz' is a kernel, not an initrd" in text


def test_an_initrd_that_is_no_cpio_is_refused(tmp_path: Path) -> None:
    (tmp_path / "initrd.tar").write_bytes(b"ustar" + b"\0" * 600)
    text = problems_with(tmp_path, initrd="initrd.tar")
    assert "images.kdev.initrd: 'initrd.tar' is not an initramfs: expected a newc cpio archive" in text


def test_early_microcode_concatenation_is_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "spec"
    write_spec(folder)
    (folder / "artifacts/initrd.img").write_bytes(INITRD + b"\0" * 3 + gzip.compress(b"main"))
    assert load_spec(folder / "spec.toml").spec.images["kdev"].initrd == "artifacts/initrd.img"


def test_directory_is_named_as_a_directory(tmp_path: Path) -> None:
    (tmp_path / "kdir").mkdir()
    assert "images.kdev.kernel: 'kdir' is a directory" in problems_with(tmp_path, kernel="kdir")


def test_fifo_is_named_as_a_fifo_and_never_opened_for_long(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    assert "images.kdev.initrd: 'pipe' is a FIFO" in problems_with(tmp_path, initrd="pipe")


def test_socket_is_named(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s"))
        assert "'s' is a socket" in problems_with(tmp_path, kernel="s")
    finally:
        sock.close()


@pytest.mark.parametrize("path", ["/dev/zero", "/proc/self/environ", "/sys/kernel/notes",
                                  "/dev/null"])
def test_kernel_file_systems_are_refused(tmp_path: Path, path: str) -> None:
    text = problems_with(tmp_path, kernel=path)
    assert f"images.kdev.kernel: '{path}' is under /{path.split('/')[1]}, a kernel file system" in text


def test_symlink_into_dev_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zero").symlink_to("/dev/zero")
    assert "images.kdev.kernel: 'zero' is under /dev" in problems_with(tmp_path, kernel="zero")


def test_missing_file_still_says_not_found(tmp_path: Path) -> None:
    assert "images.kdev.kernel: file 'nope' not found" in problems_with(tmp_path, kernel="nope")
