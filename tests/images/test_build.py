"""The image builder for real: the example Dockerfile becomes a netboot kernel, a dracut livenet
initrd, a live squashfs, an NFS root tree and a ramdisk; the live and ramdisk roots boot in QEMU
(TCG, user-mode TFTP, the squashfs over HTTP from the host, 10.0.2.2 inside the VM).

One module-scoped build is shared by every test here and the session cache makes later builds
reuse it. Timings are printed as `MEASURE ...` lines (run pytest with -s to see them).
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import re
import struct
import subprocess
import tarfile
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from bootpack.bundle.verify import archive_manifest
from bootpack.compiler import BuildResult, build_bundle
from bootpack.errors import BootpackError
from bootpack.images.builder import BuiltImage, build_images
from bootpack.images.cache import Cache
from bootpack.images.roottree import VOLATILE_SCRIPT, VOLATILE_SH, VOLATILE_UNIT
from bootpack.render.dhcp import bios_ipxe_file
from bootpack.spec import load_spec, parse_spec
from bootpack.spec.site import Site
from tests.conftest import REPO
from tests.support.vm import boot_vm, qemu_available

pytestmark = pytest.mark.docker

EXAMPLE = REPO / "examples" / "livenet"
MARKER = "BOOTPACK-BOOTED"
MACS = {"live": "52:54:00:b0:07:01", "ramdisk": "52:54:00:b0:07:02", "nfs": "52:54:00:b0:07:03"}


def measure(name: str, value: float, unit: str) -> None:
    print(f"\nMEASURE {name}: {value:.1f} {unit}")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    paths: list[str] = []  # every request's path, in order (the booted systems' reports too)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        _Quiet.paths.append(self.path)
        super().do_GET()


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A plain HTTP server on 127.0.0.1 (10.0.2.2 in QEMU user-net) for bundle/tftpboot."""
    bundle = tmp_path_factory.mktemp("livenet") / "bundle"
    handler = functools.partial(_Quiet, directory=str(bundle / "tftpboot"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield bundle, server.server_address[1]
    server.shutdown()


# The read-only root check boots the tree from a QEMU disk with the NFS entry's dracut initrd:
# the slim initrd carries NIC drivers only, so the spec asks for the disk's and its file system's
# (a real build through images.NAME.drivers). The appliance tests build the same image with the
# same drivers (tests/support/livenet.py): one build.
TEST_DRIVERS = ("virtio_blk", "squashfs")


def write_spec(folder: Path, port: int, title: str = "test") -> Path:
    data = tomllib.loads((EXAMPLE / "spec.toml").read_text())
    data["server"]["http_port"] = port
    data["images"]["debian"]["dockerfile"] = str(EXAMPLE / "Dockerfile")
    data["images"]["debian"]["drivers"] = list(TEST_DRIVERS)
    data["menu"]["title"] = title
    data["hosts"] = [{"name": f"vm-{root}", "mac": mac, "entry": root} for root, mac in MACS.items()]
    path = folder / f"spec-{title}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@dataclass
class Built:
    spec: Path
    result: BuildResult
    seconds: float


def timed_build(spec: Path, output: Path) -> Built:
    start = time.monotonic()
    result = build_bundle(load_spec(spec), output)
    return Built(spec, result, time.monotonic() - start)


@pytest.fixture(scope="module")
def livenet(debian_base_image: str, session_cache_dir: Path,
            http_root: tuple[Path, int]) -> Built:
    bundle, port = http_root
    cold = not Cache().entries()
    built = timed_build(write_spec(bundle.parent, port), bundle)
    measure("cold build" if cold else "build (cache already warm)", built.seconds, "s")
    images = bundle / "tftpboot/images/debian"
    for mode in ("live", "nfs"):
        size = (images / f"initrd-{mode}.img").stat().st_size
        measure(f"initrd size, {mode}", size / 1e6, "MB")
        print(f"initrd-{mode}.img: {size} bytes")
    measure("squashfs size", (images / "squashfs.img").stat().st_size / 1e6, "MB")
    measure("ramdisk size", (images / "ramdisk.img").stat().st_size / 1e6, "MB")
    return built


def test_bundle_has_boot_files_and_a_clean_nfs_root(livenet: Built) -> None:
    bundle = livenet.result.output
    manifest = json.loads((bundle / "bundle.json").read_text())
    paths = {row["path"] for row in manifest["files"]}
    info = manifest["images"]["debian"]
    assert info["source_image"].startswith("sha256:") and info["kernel_version"].endswith("-amd64")
    assert set(info["steps"]) == {"rootfs", "squashfs", "ramdisk"}
    for name in ("vmlinuz", "initrd-live.img", "initrd-nfs.img", "squashfs.img", "ramdisk.img"):
        assert f"tftpboot/images/debian/{name}" in paths
    root = bundle / "roots/debian"
    assert (root / "usr/lib/systemd/systemd").is_file()
    assert not (root / ".dockerenv").exists() and not (root / "etc/hostname").exists()
    assert "localhost" in (root / "etc/hosts").read_text()
    assert (root / "etc/machine-id").read_text() == ""
    for empty in ("proc", "sys", "dev", "boot"):
        assert (root / empty).is_dir() and not any((root / empty).iterdir())
    assert not any((root / "var/lib/apt/lists").iterdir())
    assert (root / VOLATILE_UNIT).is_file() and (root / VOLATILE_SCRIPT).is_file()
    # Owners and modes survive: /var/mail is root:mail (gid 8) and setgid in Debian.
    mail = (root / "var/mail").stat()
    assert mail.st_gid == 8 and mail.st_mode & 0o2000
    assert "roots/debian/usr/lib/systemd/systemd" in paths
    # bootpack's live initrd: its /init, static busybox, the image kernel's modules (sunrpc too:
    # the image has nfs-common) with depmod's index; busybox-static is not installed in the image
    listing = subprocess.run(
        f"zstd -dc {bundle}/tftpboot/images/debian/initrd-live.img | cpio -it --quiet",
        shell=True, capture_output=True, text=True, check=True).stdout.split()
    kver = info["kernel_version"]
    for member in ("init", "bin/busybox", "bin/udhcpc", "bin/switch_root", "etc/bootpack/modules",
                   f"lib/modules/{kver}/modules.dep",
                   f"lib/modules/{kver}/kernel/drivers/net/virtio_net.ko",
                   f"lib/modules/{kver}/kernel/fs/squashfs/squashfs.ko",
                   f"lib/modules/{kver}/kernel/net/sunrpc/sunrpc.ko"):
        assert member in listing, member
    assert not any("systemd" in m or "dracut" in m for m in listing)
    assert not (root / "usr/share/doc/busybox-static").exists()
    pxe = (bundle / "tftpboot/pxelinux.cfg/01-52-54-00-b0-07-02").read_text()
    # lpxelinux.0 fetches kernel and initrd from the server's HTTP
    assert re.search(r"\n  INITRD http://10\.0\.2\.2:\d+/images/debian/ramdisk\.img\n", pxe), pxe


def test_rebuild_reuses_every_step_and_is_byte_identical(livenet: Built, tmp_path: Path) -> None:
    fresh = timed_build(livenet.spec, tmp_path / "again")  # new output: archive written anew
    measure("rebuild into a new output, nothing changed", fresh.seconds, "s")
    assert fresh.result.digest == livenet.result.digest
    assert fresh.result.archive.read_bytes() == livenet.result.archive.read_bytes()
    again = timed_build(livenet.spec, tmp_path / "again")  # same output: archive reused
    measure("rebuild, nothing changed", again.seconds, "s")
    assert again.result.digest == livenet.result.digest
    assert again.result.archive.read_bytes() == livenet.result.archive.read_bytes()


def test_menu_change_reruns_no_image_step(livenet: Built, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, _port(livenet), title="menu-only change")
    loaded = load_spec(spec)
    built: dict[str, BuiltImage] = build_images(loaded, mtime=0)
    assert all(built["debian"].hits.values()) and set(built["debian"].hits) == {
        "rootfs", "squashfs", "ramdisk"}
    result = timed_build(spec, tmp_path / "menu")
    measure("rebuild after a menu-only change", result.seconds, "s")
    old = {r["path"]: r for r in json.loads((livenet.result.output / "bundle.json").read_text())["files"]}
    new = {r["path"]: r for r in json.loads((result.result.output / "bundle.json").read_text())["files"]}
    changed = {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
    assert "tftpboot/pxelinux.cfg/default" in changed
    # spec.json: the validated spec the bundle keeps for `bootpack serve`.
    # (ipxe/default.ipxe: the menu BIOS iPXE ROMs run, loaders.bios_ipxe)
    assert all(p.startswith(("tftpboot/pxelinux.cfg/", "etc/")) or p in (
        "spec.json", "tftpboot/ipxe/default.ipxe") for p in changed), changed
    # Another change into the same output takes the real Debian tree (device nodes, hard
    # links, setuid files) from the tree pool and copies its archive member by group: the
    # archive holds exactly the bundle (read and hashed whole: ~4 s; tests/bundle/
    # test_tree_pool.py compares such archives with fresh builds byte for byte, and verifies).
    menu = result.result.output
    spare = menu.with_name(f".{menu.name}.bootpack") / "trees/roots/debian"
    spare_folder = (spare / "usr").lstat().st_ino
    again = timed_build(write_spec(tmp_path, _port(livenet), title="second change"), menu)
    measure("rebuild after a second menu-only change (tree from the pool)", again.seconds, "s")
    assert (menu / "roots/debian/usr").lstat().st_ino == spare_folder
    assert archive_manifest(again.result.archive).digest == again.result.digest


def _port(built: Built) -> int:
    return int(tomllib.loads(built.spec.read_text())["server"]["http_port"])


@pytest.mark.boot
@pytest.mark.skipif(not qemu_available(), reason="qemu-system-x86 and ipxe-qemu are not installed")
@pytest.mark.parametrize(("root", "memory"), [("live", 2048), ("ramdisk", 3072)])
def test_boots_to_the_marker(livenet: Built, tmp_path: Path, root: str, memory: int) -> None:
    def reported() -> bool:
        return any(p.startswith(f"/bootpack/up/{root}?uptime=") for p in _Quiet.paths)

    boot = boot_vm(tmp_path / "serial.log", MACS[root], MARKER,
                   tftp_root=livenet.result.output / "tftpboot", timeout=420, memory_mb=memory,
                   linger=reported if root == "live" else None)
    measure(f"boot to marker, {root}", boot.seconds, "s")
    assert boot.found, boot.log[-3000:]
    time.sleep(1)  # the marker line's count follows on the same line
    log = Path(tmp_path / "serial.log").read_text(errors="replace")
    assert f"{MARKER} failed=0" in log, log[-3000:]
    if root == "live":
        # bootpack's live init hands its network over: the booted system's udev renames the NIC
        # (Linux 6.1 renames no interface that is up) and its rule brings it back up, so the
        # image's report unit (bash over /dev/tcp: the image has no network config) gets through
        assert log.index("bootpack: switching to /sbin/init") < log.index("ens2: renamed from eth0")
        assert reported(), _Quiet.paths


@pytest.fixture(scope="module")
def lz4_bundle(livenet: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example with squashfs_compression and ramdisk_compression = "lz4", served over HTTP
    (its tftpboot/ is returned): the rootfs step is the livenet fixture's, the squashfs and
    ramdisk steps rerun."""
    folder = tmp_path_factory.mktemp("lz4")
    out = folder / "bundle"
    handler = functools.partial(_Quiet, directory=str(out / "tftpboot"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = write_spec(folder, server.server_address[1], "lz4")
        data = tomllib.loads(spec.read_text())
        data["images"]["debian"].update(squashfs_compression="lz4", ramdisk_compression="lz4")
        spec.write_text(tomli_w.dumps(data))
        hits = build_images(load_spec(spec), mtime=0)["debian"].hits
        assert hits == {"rootfs": True, "squashfs": False, "ramdisk": False}, hits
        timed_build(spec, out)
        yield out / "tftpboot"
    finally:
        server.shutdown()
        server.server_close()


def test_lz4_roots_are_lz4(lz4_bundle: Path) -> None:
    images = lz4_bundle / "images/debian"
    assert (images / "ramdisk.img").read_bytes()[:4] == b"\x02\x21\x4c\x18"  # legacy frame
    head = (images / "squashfs.img").read_bytes()[:96]
    assert struct.unpack_from("<H", head, 20)[0] == 5  # squashfs compressor id 5: lz4
    for name in ("ramdisk.img", "squashfs.img"):
        measure(f"{name} size, lz4", (images / name).stat().st_size / 1e6, "MB")


@pytest.mark.boot
@pytest.mark.skipif(not qemu_available(), reason="qemu-system-x86 and ipxe-qemu are not installed")
@pytest.mark.parametrize(("root", "memory"), [("live", 2048), ("ramdisk", 3072)])
def test_lz4_roots_boot_to_the_marker(lz4_bundle: Path, tmp_path: Path, root: str,
                                      memory: int) -> None:
    # What the bundle's DHCP hands QEMU's iPXE ROM (the iPXE script's URL: iPXE fetches kernel
    # and root itself); lpxelinux.0's own TCP stack once reset the VM after 333 s on the 240 MB
    # ramdisk. The other boots above go through lpxelinux.0, as a client with another PXE ROM.
    spec = parse_spec(json.loads((lz4_bundle.parent / "spec.json").read_text()))
    boot = boot_vm(tmp_path / "serial.log", MACS[root], MARKER, tftp_root=lz4_bundle,
                   bootfile=bios_ipxe_file(spec, Site.from_spec(spec)), timeout=420,
                   memory_mb=memory)
    measure(f"boot to marker, {root} (lz4)", boot.seconds, "s")
    assert boot.found, boot.log[-3000:]
    time.sleep(1)
    log = (tmp_path / "serial.log").read_text(errors="replace")
    assert f"{MARKER} failed=0" in log, log[-3000:]


def test_readonly_root_handling_makes_etc_var_tmp_writable(debian_base_image: str) -> None:
    """The NFS root's volatile-root script, run on a read-only root (a --read-only container)."""
    check = ("cat > /run/volatile-root && sh /run/volatile-root && touch /etc/x /var/x /tmp/x "
             "&& echo WRITABLE && ! touch /usr/x 2>/dev/null && echo USR-STILL-READ-ONLY")
    result = subprocess.run(
        ["docker", "run", "--rm", "-i", "--read-only", "--cap-add", "SYS_ADMIN", "--tmpfs", "/run",
         "--entrypoint", "/bin/sh", "debian:bookworm-slim", "-c", check],
        input=VOLATILE_SH, capture_output=True, text=True, timeout=120)
    assert "WRITABLE" in result.stdout and "USR-STILL-READ-ONLY" in result.stdout, result.stderr


def direct_boot(serial_log: Path, kernel: Path, initrd: Path, cmdline: str, disk: Path | None,
                until: str, timeout: float = 300) -> tuple[bool, float, str]:
    """Boot a kernel directly (no PXE) with `disk` as a read-only virtio disk, or else a virtio
    NIC on QEMU's user network (DHCP; 10.0.2.2 is this machine's loopback)."""
    command = ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-display", "none",
               "-nodefaults", "-serial", f"file:{serial_log}", "-no-reboot", "-kernel", str(kernel),
               "-initrd", str(initrd), "-append", cmdline,
               *(["-drive", f"file={disk},if=virtio,format=raw,readonly=on"] if disk else
                 ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"])]
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - start < timeout and proc.poll() is None:
            if serial_log.exists() and until in serial_log.read_text(errors="replace"):
                time.sleep(1)
                break
            time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()
    log = serial_log.read_text(errors="replace") if serial_log.exists() else ""
    return until in log, time.monotonic() - start, log


@pytest.mark.boot
@pytest.mark.skipif(not qemu_available(), reason="qemu-system-x86 and ipxe-qemu are not installed")
def test_read_only_root_boots_clean(livenet: Built, tmp_path: Path) -> None:
    """The NFS root's read-only handling, booted for real: the same tree (the live squashfs holds
    exactly the NFS root tree) as a read-only disk, root mounted `ro` by the NFS entry's dracut
    initrd. NFS itself is proven by the appliance tests."""
    images = livenet.result.output / "tftpboot/images/debian"
    found, seconds, log = direct_boot(
        tmp_path / "serial.log", images / "vmlinuz", images / "initrd-nfs.img",
        "root=/dev/vda rootfstype=squashfs ro console=ttyS0", images / "squashfs.img", MARKER)
    measure("boot to marker, read-only root (direct kernel boot)", seconds, "s")
    assert found, log[-3000:]
    assert "bootpack-volatile" in log  # the unit ran: / was read-only
    assert f"{MARKER} failed=0" in log, log[-3000:]


@pytest.mark.boot
@pytest.mark.skipif(not qemu_available(), reason="qemu-system-x86 and ipxe-qemu are not installed")
def test_live_init_names_an_unreachable_root_and_opens_a_shell(livenet: Built,
                                                             tmp_path: Path) -> None:
    """bootpack's live init when the squashfs cannot be fetched (nothing listens on the port):
    it gets its lease, tries 5 times, says which URL failed and opens a shell on the console."""
    images = livenet.result.output / "tftpboot/images/debian"
    url = "http://10.0.2.2:9/images/debian/squashfs.img"  # port 9 (discard): nothing listens
    found, seconds, log = direct_boot(
        tmp_path / "serial.log", images / "vmlinuz", images / "initrd-live.img",
        f"root=live:{url} console=ttyS0", None, "starting a shell on the console", timeout=180)
    measure("live init: boot to its shell after 5 failed fetches", seconds, "s")
    assert found, log[-3000:]
    assert "bootpack: network up on eth0: 10.0.2.15/24" in log
    assert f"fetching {url} failed; try 5 of 5" in log
    assert f"bootpack: cannot fetch {url} (5 tries)" in log


def _import(name: str, files: dict[str, str]) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, text in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    subprocess.run(["docker", "import", "-", name], input=raw.getvalue(), check=True,
                   capture_output=True)


def _spec(folder: Path, image: dict[str, Any], root: str = "live") -> Path:
    data = {"schema": 1, "bundle": {"name": "err", "version": "1"},
            "server": {"address": "10.0.2.2"}, "dhcp": {"mode": "none"},
            "images": {"os": image}, "entries": [{"name": "e", "image": "os", "root": root}]}
    path = folder / "spec.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def test_unsupported_family_is_a_clear_error(debian_base_image: str, tmp_path: Path) -> None:
    _import("bootpack-test-alpine:1", {"etc/os-release": 'ID=alpine\nPRETTY_NAME="Alpine Linux"\n'})
    try:
        with pytest.raises(BootpackError) as info:
            build_images(load_spec(_spec(tmp_path, {"from": "bootpack-test-alpine:1"})), mtime=0,
                         cache=Cache(tmp_path / "cache"))
    finally:
        subprocess.run(["docker", "rmi", "bootpack-test-alpine:1"], capture_output=True)
    message = str(info.value)
    assert "images.os: Alpine Linux is not supported" in message and "debian" in message


def test_image_without_kernel_suggests_the_package(debian_base_image: str, tmp_path: Path) -> None:
    with pytest.raises(BootpackError) as info:
        build_images(load_spec(_spec(tmp_path, {"from": "debian:bookworm-slim"}, "ramdisk")),
                     mtime=0, cache=Cache(tmp_path / "cache"))
    assert "has no kernel" in str(info.value) and "linux-image-amd64" in str(info.value)
