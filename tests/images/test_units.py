"""Container-built images without Docker: spec keys and checks, rendering, families, the cache,
the deterministic ramdisk/squashfs writers and the root-tree cleanup and read-only handling."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bootpack.compiler import spec_json
from bootpack.errors import BootpackError
from bootpack.images import families, ramdisk, roottree, squashfs
from bootpack.images.builder import netboot_options
from bootpack.images.cache import Cache
from bootpack.images.netboot import NO_DRIVER, NO_LIVE_MODULE, Initrd, live_init_script, netboot_script
from bootpack.render.pxelinux import default_config
from bootpack.spec import load_spec, parse_spec
from bootpack.spec.model import RamdiskCompression, SquashfsCompression
from bootpack.spec.site import Site


def spec_data(image: dict[str, Any], *roots: str) -> dict[str, Any]:
    return {
        "schema": 1,
        "bundle": {"name": "t", "version": "1"},
        "server": {"address": "10.0.2.2", "http_port": 8080},
        "dhcp": {"mode": "none", "subnet": "10.0.2.0/24"},
        "images": {"os": image},
        "entries": [{"name": r, "image": "os", "root": r} for r in roots or ("live",)],
    }


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(BootpackError) as info:
        parse_spec(data)
    return str(info.value)


def test_container_image_needs_no_initrd_or_squashfs() -> None:
    spec = parse_spec(spec_data({"from": "debian:bookworm-slim"}, "live", "nfs", "ramdisk"))
    image = spec.images["os"]
    assert image.container and image.from_ == "debian:bookworm-slim"


def test_image_needs_exactly_one_source() -> None:
    assert "needs a source" in problems(spec_data({}))
    both = problems(spec_data({"kernel": "vmlinuz", "from": "debian:bookworm-slim"}))
    assert "'kernel' and 'from' are both set" in both and "exactly one source" in both
    assert "'from' and 'dockerfile'" in problems(spec_data({"from": "x", "dockerfile": "D"}))


def test_container_keys_only_with_container_images() -> None:
    message = problems(spec_data({"kernel": "k", "initrd": "i", "squashfs": "s",
                                  "packages": ["curl"]}))
    assert "images.os.packages: only used with 'from' or 'dockerfile'" in message
    message = problems(spec_data({"from": "debian", "initrd": "i"}))
    assert "images.os.initrd: bootpack builds it" in message


@pytest.mark.parametrize("key", ["squashfs_compression", "ramdisk_compression"])
def test_root_compression_is_one_of_two_and_only_for_container_images(key: str) -> None:
    assert parse_spec(spec_data({"from": "d", key: "lz4"}, "ramdisk"))
    assert getattr(parse_spec(spec_data({"from": "d"}, "ramdisk")).images["os"], key) == "zstd"
    message = problems(spec_data({"from": "d", key: "xz -9"}, "ramdisk"))
    assert f"images.os.{key}" in message and "'zstd' or 'lz4'" in message, message
    assert f"images.os.{key}: only used with 'from' or 'dockerfile'" in problems(
        spec_data({"kernel": "k", "initrd": "i", key: "lz4"}, "ramdisk"))
    # the default is no choice: a bundle's spec.json (every default written out) reads back clean
    files = parse_spec(spec_data({"kernel": "k", "initrd": "i", key: "zstd"}, "ramdisk"))
    assert parse_spec(json.loads(spec_json(files))) == files


def test_zstd_squashfs_options_are_unchanged() -> None:
    """The default's options are part of existing cache keys: changing them rebuilds every
    user's squashfs."""
    assert squashfs.options() == ("-comp", "zstd", "-Xcompression-level", "15", "-b", "1M",
                                  "-no-xattrs", "-noappend", "-no-progress", "-quiet")


def test_package_names_are_checked() -> None:
    assert "is not a package name" in problems(spec_data({"from": "d", "packages": ["a; rm -rf /"]}))
    parse_spec(spec_data({"from": "d", "packages": ["curl=7.88.1-10+deb12u8", "g++"]}))


def test_driver_names_are_checked() -> None:
    """images.<name>.drivers: kernel module names only; nothing that could end a shell word."""
    for bad in ("a b", "x'y", '"', "$(reboot)", "-v", "sfc;", "", "m" * 65):
        message = problems(spec_data({"from": "d", "drivers": [bad]}))
        assert "images.os.drivers[0]" in message and "is not a kernel module name" in message, bad
    assert "only used with 'from' or 'dockerfile'" in problems(
        spec_data({"kernel": "k", "initrd": "i", "drivers": ["sfc"]}))
    assert parse_spec(spec_data({"from": "d", "drivers": ["mlx5_core", "8139too", "xen-netfront"]}))


def test_missing_dockerfile_and_overlay_are_reported(tmp_path: Path) -> None:
    import tomli_w

    data = spec_data({"dockerfile": "nope/Dockerfile", "overlay": "files"})
    (tmp_path / "spec.toml").write_text(tomli_w.dumps(data))
    with pytest.raises(BootpackError) as info:
        load_spec(tmp_path / "spec.toml")
    assert "images.os.dockerfile: file 'nope/Dockerfile' not found" in str(info.value)
    assert "images.os.overlay: folder 'files' not found" in str(info.value)


def test_schema_names_the_from_key() -> None:
    from bootpack.spec.reference import json_schema

    props = json_schema()["$defs"]["Image"]["properties"]
    assert {"from", "dockerfile", "packages", "overlay"} <= set(props)


def test_pxelinux_for_container_images() -> None:
    spec = parse_spec(spec_data({"dockerfile": "Dockerfile"}, "live", "nfs", "ramdisk"))
    text = default_config(spec, Site.from_spec(spec))
    live, nfs, rd = text.split("\nLABEL ")[1:]
    # an initrd per root mode: bootpack's live init, dracut's for NFS
    assert "INITRD http://10.0.2.2:8080/images/os/initrd-live.img" in live
    assert "root=live:http://10.0.2.2:8080/images/os/squashfs.img" in live
    assert "rd.live" not in live and "ip=dhcp" not in live  # dracut's words: not for our init
    assert "INITRD http://10.0.2.2:8080/images/os/initrd-nfs.img" in nfs
    assert "root=nfs:10.0.2.2:/srv/bootpack/roots/os" in nfs
    assert "INITRD http://10.0.2.2:8080/images/os/ramdisk.img" in rd and "root=" not in rd


def test_families() -> None:
    assert families.detect_family('ID=debian\nVERSION_ID="12"\n', "images.os").name == "debian"
    ubuntu = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n'
    assert families.detect_family(ubuntu, "images.os").name == "debian"
    with pytest.raises(BootpackError) as info:
        families.detect_family('PRETTY_NAME="Alpine Linux v3.20"\nID=alpine\n', "images.os")
    message = str(info.value)
    assert "Alpine Linux v3.20 is not supported" in message and "debian" in message


def test_netboot_options_follow_the_root_modes() -> None:
    debian = families.DEBIAN
    live = netboot_options(debian, ["openssh-server"], {"live"})
    # a live root boots bootpack's own init: nothing of dracut is installed in the image
    assert live.packages == ("openssh-server",) and live.initrds == ()
    assert live.live_init == live_init_script() and live.live_init.startswith("#!/bin/sh")
    nfs = netboot_options(debian, [], {"nfs"})
    assert {"dracut", "dracut-network", "dbus", "isc-dhcp-client", "iputils-arping", "procps",
            "nfs-common"} <= set(nfs.packages)
    assert nfs.initrds == (Initrd("nfs", ("nfs", "network-legacy"), ("livenet", "dmsquash-live")),)
    assert nfs.live_init == ""
    # /etc/protocols etc. for mount.nfs in the initrd: NFSv3 needs them to reach rpcbind/mountd.
    assert "netbase" in nfs.packages
    only_ram = netboot_options(debian, [], {"ramdisk"})
    assert only_ram.packages == () and only_ram.initrds == () and only_ram.live_init == ""
    assert "dracut" not in netboot_script(debian, only_ram).split("fi\n")[-1]
    assert "apt-get" not in netboot_script(debian, only_ram)
    # live alone: package lists for busybox-static, unpacked for the initrd, never installed
    script = netboot_script(debian, live)
    assert "dracut " not in script.split("fi\n", 1)[1].replace("/usr/bin/dracut", "")
    download = "apt-get download -q -o APT::Sandbox::User=root busybox-static"
    assert script.index("apt-get update") < script.index(download) < script.index("apt-get clean")
    assert 'dpkg-deb -x "$pkg" "$dest"' in script and "dest=/.bootpack/tools" in script
    assert "cp $w/tools/bin/busybox $s/bin/busybox" in script
    assert 'live="squashfs loop overlay"' in script and 'depmod -b $s "$kver"' in script
    # no user packages: one update just for the download
    assert netboot_script(debian, netboot_options(debian, [], {"live"})).count("apt-get update") == 1
    # an image with live and nfs entries: one container run, one dracut initrd (nfs), and the
    # staged live init after it
    both = netboot_script(debian, netboot_options(debian, [], {"live", "nfs", "ramdisk"}))
    runs = [line for line in both.splitlines() if line.startswith("dracut ")]
    assert len(runs) == 1 and "--add 'nfs network-legacy'" in runs[0]
    assert "qemu livenet dmsquash-live'" in runs[0] and runs[0].endswith("/.bootpack/initrd-nfs.img")
    assert "--compress 'zstd -19 -q -T0'" in runs[0]
    assert both.index(runs[0]) < both.index("s=/.bootpack/live-init")
    # an image of another CPU: dracut (emulated) leaves compression to this machine's zstd
    foreign = netboot_script(debian, netboot_options(debian, [], {"nfs"}, foreign=True))
    assert "--no-compress" in foreign and "--compress" not in foreign.replace("--no-compress", "")


def _live_modules_part(script: str, work: Path) -> str:
    """The module lists of a live-only script (the drivers', then the live stage's, up to the
    staging), as the container runs them, with the scratch folder at `work`."""
    body = script[script.index("w=/.bootpack"):script.index("s=/.bootpack/live-init")]
    return body.replace("w=/.bootpack", f"w={work}")


@pytest.mark.parametrize(("client", "expected"), [(True, "squashfs loop overlay sunrpc"),
                                                  (False, "squashfs loop overlay")])
def test_live_init_loads_sunrpc_only_with_the_nfs_client(tmp_path: Path, client: bool,
                                                         expected: str) -> None:
    """The stage's sunrpc switch, run here by sh against a fake root: mount.nfs present (the
    image has nfs-common) adds sunrpc to what /init loads (its booted system mounts rpc_pipefs)."""
    script = netboot_script(families.DEBIAN, netboot_options(families.DEBIAN, [], {"live"}))
    line = next(x for x in script.splitlines() if x.startswith("if [ -e /sbin/mount.nfs ]"))
    root = tmp_path / "root"
    (root / "sbin").mkdir(parents=True)
    if client:
        (root / "sbin/mount.nfs").write_text("")
    probe = line.replace(" /", f" {root}/")  # the image's paths, under the fake root
    out = subprocess.run(["sh", "-c", f'live="squashfs loop overlay"\n{probe}\nprintf %s "$live"'],
                         capture_output=True, text=True, check=True).stdout
    assert out == expected


def _run_live_modules_part(tmp_path: Path, lacking: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The live stage's module lists for an image with drivers = ["sfc"], run by sh against a
    fake modprobe whose kernel lacks the modules matching the case pattern `lacking`, as in the
    container. Returns the run and the work folder (live-deps: the modules found)."""
    options = netboot_options(families.DEBIAN, [], {"live"}, ["sfc"])
    work = tmp_path / "work"
    work.mkdir()
    body = _live_modules_part(netboot_script(families.DEBIAN, options), work)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "modprobe").write_text(f'#!/bin/sh\ncase "$4" in {lacking}) exit 1;; esac\n'
                                   'echo "insmod /lib/modules/6.1/$4.ko"\n')
    (fake / "modprobe").chmod(0o755)
    result = subprocess.run(["sh", "-euc", f"kver=6.1\n{body}"], capture_output=True,
                            text=True, env={"PATH": f"{fake}:/usr/bin:/bin"})
    return result, work


@pytest.mark.parametrize(("missing", "status", "message"), [
    ("overlay", NO_LIVE_MODULE, "has no module overlay, which a live root needs"),
    ("sfc", NO_DRIVER, "has no module sfc"),
])
def test_live_init_needs_its_modules_and_the_users_drivers(tmp_path: Path, missing: str,
                                                          status: int, message: str) -> None:
    """The live stage stops with its own exit status when the kernel lacks a module the live
    root needs or a driver the user listed."""
    result, _ = _run_live_modules_part(tmp_path, f"{missing}|e1000*")
    assert result.returncode == status and message in result.stderr


def test_live_init_skips_the_nics_the_kernel_lacks(tmp_path: Path) -> None:
    result, work = _run_live_modules_part(tmp_path, "e1000*|ice")
    assert result.returncode == 0, result.stderr
    loaded = [line.split("/")[-1] for line in (work / "live-deps").read_text().splitlines()]
    assert loaded[:4] == ["squashfs.ko", "loop.ko", "overlay.ko", "sfc.ko"]
    assert "virtio_net.ko" in loaded and "e1000.ko" not in loaded and "ice.ko" not in loaded


def test_netboot_initrd_carries_only_the_listed_drivers(tmp_path: Path) -> None:
    """The slim NFS initrd: --drivers with bootpack's NICs (those the kernel has) and the user's
    (which the kernel must have), every other network driver omitted. The shell part runs here
    against a fake modprobe and module tree, as it runs in the container."""
    options = netboot_options(families.DEBIAN, [], {"nfs"}, ["sfc", "sfc"])
    assert options.drivers == ("sfc",) and "virtio_net" in options.nics
    script = netboot_script(families.DEBIAN, options)
    assert '--drivers "$drivers" --omit-drivers "$omit"' in script
    body = script[script.index("w=/.bootpack"):script.index("dracut --reproducible")]
    work = tmp_path / "work"
    work.mkdir()
    mods = tmp_path / "lib/modules/6.1/kernel/drivers/net"
    for rel in ("ethernet/intel/e1000/e1000.ko", "ethernet/sfc/sfc.ko", "ethernet/sfc/mtd-x.ko",
                "ethernet/broadcom/bnx2x/bnx2x.ko", "phy/realtek.ko", "virtio_net.ko",
                "usb/r8152.ko"):
        (mods / rel).parent.mkdir(parents=True, exist_ok=True)
        (mods / rel).write_bytes(b"")
    have = {"e1000": ["e1000"], "sfc": ["mtd-x", "sfc"], "virtio_net": ["virtio_net"],
            "virtio_pci": None}  # None: built in
    fake = tmp_path / "bin"
    fake.mkdir()
    cases = "\n".join(
        f"  {name}) " + ("echo builtin virtio_pci" if deps is None else
                         "; ".join(f"echo insmod /lib/modules/6.1/x/{d}.ko" for d in deps)) + ";;"
        for name, deps in have.items())
    (fake / "modprobe").write_text(f'#!/bin/sh\ncase "$4" in\n{cases}\n  *) exit 1;;\nesac\n')
    (fake / "modprobe").chmod(0o755)
    shell = (body.replace("w=/.bootpack", f"w={work}").replace("/lib/modules", f"{tmp_path}/lib/modules")
             + 'echo "DRIVERS=$drivers"; echo "OMIT=$omit"\n')
    result = subprocess.run(["sh", "-euc", f"kver=6.1\n{shell}"], capture_output=True, text=True,
                            env={"PATH": f"{fake}:/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    out = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert out["DRIVERS"].split() == ["sfc", "virtio_pci", "virtio_net", "e1000"]
    # sfc's dependency mtd-x stays (as mtd_x); bnx2x and the USB NIC go; PHYs are never omitted
    assert out["OMIT"].split() == ["bnx2x", "r8152", "rpcrdma"]
    # a driver the kernel lacks stops the build with its own exit status
    missing = netboot_script(families.DEBIAN, netboot_options(families.DEBIAN, [], {"nfs"}, ["nope"]))
    body = missing[missing.index("w=/.bootpack"):missing.index("dracut --reproducible")]
    result = subprocess.run(["sh", "-euc", f"kver=6.1\n{body.replace('w=/.bootpack', f'w={work}')}"],
                            capture_output=True, text=True, env={"PATH": f"{fake}:/usr/bin:/bin"})
    assert result.returncode == NO_DRIVER and "has no module nope" in result.stderr


def test_cache_builds_once_and_prunes(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    calls: list[Path] = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "result").write_text("x")

    first = cache.get_or_build("step", {"a": 1}, build)
    again = cache.get_or_build("step", {"a": 1}, build)
    other = cache.get_or_build("step", {"a": 2}, build)
    assert len(calls) == 2 and not first.hit and again.hit and first.path == again.path
    assert other.key != first.key and (first.path / "result").read_text() == "x"

    def fail(out: Path) -> None:
        (out / "half").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.get_or_build("step", {"a": 3}, fail)
    assert len(cache.entries()) == 2  # nothing half-written is left as an entry
    assert cache.prune(older_than_days=1) == (0, 0)
    removed, freed = cache.prune()
    assert removed == 2 and freed > 0 and cache.entries() == []


def make_tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hosts").write_text("172.17.0.2\tabc123\n")
    (root / "etc/hostname").write_text("abc123\n")
    (root / "etc/resolv.conf").write_text("nameserver 8.8.8.8\n")
    (root / "etc/machine-id").write_text("e36c8172a1e647b5be4ea4f02c236a48\n")
    (root / ".dockerenv").write_text("")
    (root / "boot").mkdir()
    (root / "boot/vmlinuz-6.1").write_bytes(b"k")
    for d in ("proc/1", "var/log/apt", "var/lib/apt/lists", "usr/lib/systemd", "usr/sbin", "tmp"):
        (root / d).mkdir(parents=True)
    (root / "proc/1/status").write_text("x")
    (root / "var/log/apt/history.log").write_text("Start-Date: 2026-11-22")
    (root / "var/lib/apt/lists/deb.debian.org_Packages").write_text("x")
    (root / "usr/lib/systemd/systemd").write_bytes(b"\x7fELF")
    (root / "usr/lib/systemd/systemd").chmod(0o755)
    (root / "usr/sbin/init").symlink_to("/lib/systemd/systemd")
    (root / "sbin").symlink_to("usr/sbin")
    (root / "lib").symlink_to("usr/lib")
    (root / "usr/bin").mkdir()
    (root / "usr/bin/su").write_bytes(b"su")
    (root / "usr/bin/su").chmod(0o4755)
    return root


def test_clean_tree_removes_docker_and_build_leftovers(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    roottree.clean_tree(root)
    assert not (root / ".dockerenv").exists() and not (root / "etc/hostname").exists()
    assert "abc123" not in (root / "etc/hosts").read_text()
    assert "localhost" in (root / "etc/hosts").read_text()
    assert (root / "etc/resolv.conf").read_text() == ""
    assert (root / "etc/machine-id").read_text() == ""
    for empty in ("proc", "boot", "tmp", "sys", "dev", "run"):
        assert (root / empty).is_dir() and not any((root / empty).iterdir())
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (root / "var/log/apt").is_dir() and not (root / "var/log/apt/history.log").exists()
    assert not any((root / "var/lib/apt/lists").iterdir())
    assert roottree.find_init(root) == "/sbin/init"


def test_readonly_root_support_is_installed(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    roottree.add_readonly_support(root)
    unit = (root / roottree.VOLATILE_UNIT).read_text()
    assert "ConditionPathIsReadWrite=!/" in unit and "DefaultDependencies=no" in unit
    assert "Before=local-fs-pre.target" in unit
    wants = root / roottree.VOLATILE_WANTS
    assert wants.is_symlink() and os.readlink(wants) == f"/{roottree.VOLATILE_UNIT}"
    script = (root / roottree.VOLATILE_SCRIPT).read_text()
    assert "for dir in /etc /var" in script and "mount -t overlay" in script
    assert "tmpfs /tmp" in script
    assert (root / roottree.VOLATILE_SCRIPT).stat().st_mode & 0o111


@pytest.mark.parametrize(("compression", "unpack"), [("zstd", ["zstd", "-dc"]),
                                                     ("lz4", ["lz4", "-dc"])])
def test_ramdisk_cpio_is_deterministic_and_readable(tmp_path: Path,
                                                    compression: RamdiskCompression,
                                                    unpack: list[str]) -> None:
    if shutil.which(unpack[0]) is None or shutil.which("cpio") is None:
        pytest.skip(f"{unpack[0]} or cpio missing")
    root = make_tree(tmp_path / "tree")
    one, two = tmp_path / "one.img", tmp_path / "two.img"
    ramdisk.make_ramdisk(root, one, 0, "/sbin/init", compression=compression)
    os.utime(root / "etc/hosts", (12345, 12345))
    ramdisk.make_ramdisk(root, two, 0, "/sbin/init", compression=compression)
    assert one.read_bytes() == two.read_bytes()
    # the frame the kernel unpacks: zstd's, or lz4's legacy one (0x184C2102)
    assert one.read_bytes()[:4] == {"zstd": b"\x28\xb5\x2f\xfd", "lz4": b"\x02\x21\x4c\x18"}[compression]
    raw = subprocess.run([*unpack, one], capture_output=True, check=True).stdout
    listing = subprocess.run(["cpio", "-tv"], input=raw, capture_output=True, check=True).stdout
    text = listing.decode()
    assert "init -> sbin/init" in text and "-rwsr-xr-x" in text and "usr/lib/systemd/systemd" in text
    names = [line.split()[-1] for line in text.splitlines() if "->" not in line]
    assert names == sorted(names, key=str.encode)


@pytest.mark.parametrize(("compression", "kind", "block"), [("zstd", 6, 1 << 20),
                                                             ("lz4", 5, 128 << 10)])
def test_squashfs_is_deterministic(tmp_path: Path, compression: SquashfsCompression, kind: int,
                                   block: int) -> None:
    if shutil.which("mksquashfs") is None:
        pytest.skip("mksquashfs missing")
    root = make_tree(tmp_path / "tree")
    one, two = tmp_path / "one.sqfs", tmp_path / "two.sqfs"
    squashfs.make_squashfs(root, one, 1700000000, compression=compression)
    os.utime(root / "etc/hosts", (12345, 12345))
    squashfs.make_squashfs(root, two, 1700000000, compression=compression)
    assert one.read_bytes() == two.read_bytes()
    head = one.read_bytes()[:96]  # the superblock: block size at 12, compressor id at 20
    assert struct.unpack_from("<I", head, 12)[0] == block
    assert struct.unpack_from("<H", head, 20)[0] == kind


def test_archive_keeps_owners_and_modes_in_root_trees(tmp_path: Path) -> None:
    import tarfile

    from bootpack.bundle.archive import extract_archive, write_archive

    bundle = tmp_path / "bundle"
    (bundle / "roots/os/usr/bin").mkdir(parents=True)
    (bundle / "roots/os/tmp").mkdir()
    (bundle / "roots/os/tmp").chmod(0o1777)
    su = bundle / "roots/os/usr/bin/su"
    su.write_bytes(b"su")
    su.chmod(0o4755)
    log = bundle / "roots/os/log"
    log.write_text("x")
    os.chown(log, 100, 101)
    (bundle / "tftpboot").mkdir()
    (bundle / "tftpboot/x").write_text("x")
    os.chown(bundle / "tftpboot/x", 100, 101)
    archive = tmp_path / "b.tar.gz"
    write_archive(bundle, archive, "b", 0)
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert (members["b/roots/os/log"].uid, members["b/roots/os/log"].gid) == (100, 101)
    assert members["b/roots/os/usr/bin/su"].mode == 0o4755
    assert members["b/roots/os/tmp"].mode == 0o1777
    assert members["b/tftpboot/x"].uid == 0
    out = tmp_path / "out"
    extract_archive(archive, out)
    assert (out / "roots/os/usr/bin/su").stat().st_mode & 0o7777 == 0o4755
    assert (out / "roots/os/tmp").stat().st_mode & 0o7777 == 0o1777


def test_cli_cache_info_and_prune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from bootpack.cli import main

    monkeypatch.setenv("BOOTPACK_CACHE_DIR", str(tmp_path / "c"))
    Cache().get_or_build("s", {}, lambda out: (out / "f").write_text("x" * 1000) and None)
    assert main(["cache", "info"]) == 0
    assert "1 entries" in capsys.readouterr().out
    assert main(["cache", "prune", "--older-than", "7"]) == 0
    assert "removed 0 entries" in capsys.readouterr().out
    assert main(["cache", "prune"]) == 0
    assert "removed 1 entry" in capsys.readouterr().out and Cache().entries() == []


def test_overlay_goes_in_owned_by_root(tmp_path: Path) -> None:
    import io
    import tarfile

    from bootpack.images.netboot import _work_archive

    overlay = tmp_path / "overlay"
    (overlay / "etc/dracut.conf.d").mkdir(parents=True)
    conf = overlay / "etc/dracut.conf.d/x.conf"
    conf.write_text("x")
    os.chown(conf, 1000, 1000)
    data = _work_archive("#!/bin/sh\n", overlay, 0)
    assert data == _work_archive("#!/bin/sh\n", overlay, 0)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    member = members[".bootpack/overlay/etc/dracut.conf.d/x.conf"]
    assert (member.uid, member.gid, member.mtime) == (0, 0, 0)
    assert ".bootpack/netboot.sh" in members


def test_docker_tags_are_valid() -> None:
    from bootpack.images.builder import _tag

    assert _tag("Live.Net_", "debian") == "bootpack-live-net-debian:latest"


def test_boot_report_unit_reports_up_with_bash_alone(tmp_path: Path) -> None:
    import http.server
    import threading

    root = tmp_path / "root"
    roottree.add_boot_report(root)
    wants = root / roottree.REPORT_WANTS
    assert os.readlink(wants) == f"/{roottree.REPORT_UNIT}"
    unit = (root / roottree.REPORT_UNIT).read_text()
    assert "ConditionKernelCommandLine=bootpack.report" in unit and "network-online.target" in unit
    # run the script as installed, with /proc replaced and no curl or wget on PATH
    cmdline, uptime = tmp_path / "cmdline", tmp_path / "uptime"
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    port = server.server_address[1]
    cmdline.write_text(f"console=ttyS0 bootpack.report=http://127.0.0.1:{port}/bootpack/up/live quiet\n")
    uptime.write_text("12.34 5.67\n")
    script = (root / roottree.REPORT_SCRIPT).read_text()
    script = script.replace("/proc/cmdline", str(cmdline)).replace("/proc/uptime", str(uptime))
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("sed", "cut", "sleep"):
        (tools / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    result = subprocess.run(["/bin/bash", "-c", script], env={"PATH": str(tools)}, timeout=20,
                            capture_output=True, text=True)
    server.server_close()
    assert result.returncode == 0, result.stderr
    assert seen == ["/bootpack/up/live?uptime=12.34"]
    # without bootpack.report= it does nothing
    cmdline.write_text("console=ttyS0\n")
    assert subprocess.run(["/bin/bash", "-c", script], env={"PATH": str(tools)}, timeout=5).returncode == 0


def _build_slowly_in_another_process(root: str, log: str) -> bool:
    def build(out: Path) -> None:
        with open(log, "a") as f:
            f.write("built\n")
        import time

        time.sleep(1)  # long enough for the other process to find the step missing too
        (out / "result").write_text("x")

    return Cache(Path(root)).get_or_build("step", {"a": 1}, build).hit


def test_cache_two_processes_build_a_missing_step_once(tmp_path: Path) -> None:
    """Parallel builds (two terminals, test workers) take turns on the step's lock: the second
    reuses what the first built."""
    import multiprocessing

    log = tmp_path / "log"
    with multiprocessing.get_context("fork").Pool(2) as pool:
        hits = pool.starmap(_build_slowly_in_another_process,
                            [(str(tmp_path / "cache"), str(log))] * 2)
    assert log.read_text() == "built\n" and sorted(hits) == [False, True]
    assert len(Cache(tmp_path / "cache").entries()) == 1
    Cache(tmp_path / "cache").prune()
    assert not list((tmp_path / "cache" / "steps").glob(".*.lock"))


def test_a_foreign_architecture_needs_binfmt_and_says_how(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from bootpack.images import docker_image

    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    docker_image.need_emulation("x86_64", "images.x")  # this machine's own: nothing to check
    monkeypatch.setattr(docker_image, "BINFMT", tmp_path)
    with pytest.raises(BootpackError) as info:
        docker_image.need_emulation("arm64", "images.arm")
    text = str(info.value)
    assert text.startswith("images.arm: architecture = 'arm64' is not this machine's (x86_64)")
    assert "no enabled qemu-aarch64 entry" in text and "apt-get install qemu-user-static" in text
    (tmp_path / "qemu-aarch64").write_text("disabled\ninterpreter /usr/libexec/qemu-binfmt/x\n")
    with pytest.raises(BootpackError):
        docker_image.need_emulation("arm64", "images.arm")
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/x\n")
    docker_image.need_emulation("arm64", "images.arm")


def test_the_kernel_package_suggested_follows_the_architecture() -> None:
    from bootpack.images.families import DEBIAN

    assert DEBIAN.kernel_package("arm64") == "linux-image-arm64"
    assert DEBIAN.kernel_package("x86_64") == "linux-image-amd64"


@pytest.mark.docker
def test_an_image_of_another_architecture_is_refused(debian_base_image: str) -> None:
    from bootpack.images.docker_image import check_architecture, docker_client

    client = docker_client()
    check_architecture(client, debian_base_image, "x86_64", "images.x")  # debian:bookworm-slim
    with pytest.raises(BootpackError) as info:
        check_architecture(client, debian_base_image, "arm64", "images.x")
    assert ("images.x: the container image is for amd64, but architecture = 'arm64'; use an "
            "image built for linux/arm64") in str(info.value)
