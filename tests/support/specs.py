"""Spec texts shared by tests: the issue's example, verbatim, and a builder for variations."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from bootpack.spec import parse_spec
from bootpack.spec.model import Spec
from bootpack.spec.site import Site

LAB = """\
schema = 1
[bundle]
name = "lab"
version = "1.0.0"
[server]
address = "10.0.2.2"          # where clients reach TFTP/HTTP/NFS
[dhcp]
mode = "server"               # server | proxy | none
subnet = "10.0.2.0/24"
range = ["10.0.2.100", "10.0.2.200"]
router = "10.0.2.2"
dns = ["10.0.2.3"]
[menu]
title = "Lab"
timeout = 5                   # seconds
default = "live"
[images.kdev]
kernel = "artifacts/vmlinuz"
initrd = "artifacts/initrd.img"   # optional
[[entries]]
name = "live"
label = "Kernel under test"
image = "kdev"
root = "ramdisk"              # ramdisk | nfs | live | local
cmdline = "console=ttyS0,115200"
[[hosts]]
name = "node1"
mac = "52:54:00:aa:bb:cc"
ip = "10.0.2.50"
entry = "live"
cmdline = "node=1"
"""


# Stand-ins with the headers bootpack checks (a bzImage setup header, a newc cpio magic),
# small and recognisable in a bundle.
KERNEL = b"\0" * 0x202 + b"HdrS" + b"\0" * 10 + b"kernel\n"
INITRD = b"070701" + b"0" * 104 + b"initrd\n"
# An arm64 Image's header: "MZ" (its EFI/PE stub) and the "ARM\x64" magic at 0x38.
ARM64_KERNEL = b"MZ" + b"\0" * 0x36 + b"ARM\x64" + b"\0" * 0x40 + b"arm64 kernel\n"


def lab_data() -> dict[str, Any]:
    return copy.deepcopy(tomllib.loads(LAB))


def menu_lab(other_label: str, **changes: Any) -> tuple[Spec, Site]:
    """The lab for menu renderers: a first entry `other` that is not menu.default, a local-disk
    entry last, and top-level keys replaced by `changes`."""
    data = lab_data()
    data["entries"].insert(0, {"name": "other", "label": other_label, "image": "kdev",
                               "cmdline": "console=ttyS0 entry=other"})
    data["entries"].append({"name": "disk", "label": "Local disk", "root": "local"})
    data.update(changes)
    spec = parse_spec(data)
    return spec, Site.from_spec(spec)


def mixed_data() -> dict[str, Any]:
    """The lab with an arm64 image and entry next to the x86-64 ones: a mixed rack."""
    data = lab_data()
    data["images"]["kdev"]["architecture"] = "x86_64"
    data["images"]["karm"] = {"architecture": "arm64", "kernel": "artifacts/Image",
                              "initrd": "artifacts/initrd.img"}
    data["entries"].append({"name": "arm", "label": "arm64 kernel", "image": "karm",
                            "root": "ramdisk", "cmdline": "console=ttyAMA0"})
    data["hosts"].append({"name": "armnode", "mac": "52:54:00:aa:bb:dd", "ip": "10.0.2.52",
                          "entry": "arm"})
    return data


def write_spec(folder: Path, data: dict[str, Any] | str = LAB, artifacts: bool = True) -> Path:
    """Write a spec (text or data) into folder, with small stand-in kernel/initrd files."""
    folder.mkdir(parents=True, exist_ok=True)
    if artifacts:
        (folder / "artifacts").mkdir(exist_ok=True)
        (folder / "artifacts" / "vmlinuz").write_bytes(KERNEL)
        (folder / "artifacts" / "initrd.img").write_bytes(INITRD)
        (folder / "artifacts" / "Image").write_bytes(ARM64_KERNEL)
    path = folder / "spec.toml"
    path.write_text(data if isinstance(data, str) else tomli_w.dumps(data))
    return path
