"""Building a spec image from a container image: the pipeline, each step cached.

    from / dockerfile --resolve--> image id --family (os-release)-->
    rootfs step   (netboot.py: packages + overlay + dracut in a container, export, clean)
                  -> kernel, a dracut initrd per root mode, tree    key: image id, packages,
                                                                         overlay digest, dracut
                                                                         options, SOURCE_DATE_EPOCH
    squashfs step (live entries)    -> squashfs.img                 key: rootfs key, options
    ramdisk step  (ramdisk entries) -> ramdisk.img (cpio, zstd/lz4)  key: rootfs key, options
    nfs entries use the cached root tree as is (roots/<image>/ in the bundle).

Menu, host, DHCP and server settings are in no key: changing them reuses every step.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker

from ..bundle.manifest import ImageProvenance
from ..errors import BootpackError
from ..external import need, run_fed
from ..files import PREFIX, read_chunks
from ..progress import SILENT, Progress
from ..spec import LoadedSpec
from ..spec.model import Architecture, Spec, build_host_architecture
from . import cpio, families, ramdisk, squashfs
from .cache import Cache, digest_tree
from .cache import Entry as CacheEntry
from .docker_image import docker_client, need_emulation, read_file, resolve_image
from .netboot import LIVE_INIT, WORK, Initrd, NetbootOptions, initrd_file, live_init_script, run_netboot
from .roottree import add_boot_report, add_readonly_support, clean_tree, find_init, tree_size

# dracut modules each dracut root mode needs (field notes: network-legacy, not systemd-networkd).
# A live root boots bootpack's own init instead (netboot.live_init_script; docs/speed.md, round 5):
# dracut's livenet initrd spent ~30 s of a 55 s boot under TCG, bootpack's takes ~4 s.
DRACUT_MODULES = {
    "nfs": ("nfs", "network-legacy"),
}
INITRD_MODES = ("live", "nfs")  # the root modes that boot an initrd bootpack builds


# The network drivers a netboot initrd carries (when the image's kernel has them): the NICs of
# servers, desktops and virtual machines bootpack is used on. Every other Ethernet driver is left
# out, and so are storage, file system, HID and crypto drivers a network root never loads: the
# generic dracut initrd was 50 MB (zstd), most of it modules. images.<name>.drivers adds more.
NIC_DRIVERS = (
    "virtio_pci", "virtio_net",  # QEMU/KVM
    "e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "ice",  # Intel
    "r8169",  # Realtek
    "tg3", "bnxt_en",  # Broadcom
    "mlx4_en", "mlx5_core",  # Mellanox / NVIDIA
    "vmxnet3", "hv_netvsc", "xen_netfront",  # VMware, Hyper-V, Xen guests
)

ROOTFS_FORMAT = 4  # bump when the rootfs step's output layout or cleaning changes


@dataclass
class BuiltImage:
    name: str
    kernel: Path
    initrds: dict[str, Path] = field(default_factory=dict)  # root mode (live, nfs) -> its initrd
    squashfs: Path | None = None  # live root
    ramdisk: Path | None = None  # ramdisk root (the initramfs the kernel boots)
    tree: Path | None = None  # nfs root tree
    root: Path | None = None  # the image's root tree, whatever the modes (loaders it carries)
    source: str = ""  # container image id the root tree was made from
    kernel_version: str = ""
    keys: dict[str, str] = field(default_factory=dict)  # step -> cache key
    hits: dict[str, bool] = field(default_factory=dict)  # step -> reused from the cache


def image_modes(spec: Spec, name: str) -> set[str]:
    return {e.root for e in spec.entries if e.image == name and e.root != "local"}


def container_images(spec: Spec) -> list[str]:
    """Names of used images built from a container image, sorted."""
    used = {e.image for e in spec.entries if e.image is not None and e.root != "local"}
    return sorted(n for n in used if spec.images[n].container)


def netboot_options(family: families.Family, user_packages: Iterable[str],
                    modes: set[str], drivers: Iterable[str] = (),
                    foreign: bool = False) -> NetbootOptions:
    """What the netboot container does; `foreign`: the image is for another CPU than this
    machine's (its initrd is compressed on the host)."""
    needs: set[str] = set()
    if "nfs" in modes:
        needs |= {families.DRACUT, families.NFS}
    packages = list(dict.fromkeys(user_packages))
    packages += [p for p in family.needs(needs) if p not in packages]
    # The NFS initrd leaves out dracut's live modules, which --no-hostonly would take wherever
    # the image has them (the live root has its own init).
    initrds = tuple(Initrd(mode, DRACUT_MODULES[mode], ("livenet", "dmsquash-live"))
                    for mode in DRACUT_MODULES if mode in modes)
    return NetbootOptions(packages=tuple(packages), initrds=initrds, nics=NIC_DRIVERS,
                          drivers=tuple(dict.fromkeys(drivers)), compress_on_host=foreign,
                          live_init=live_init_script() if "live" in modes else "")


def _build_rootfs(client: docker.DockerClient, image_id: str, family: families.Family,
                  options: NetbootOptions, overlay: Path | None, where: str, mtime: int,
                  architecture: Architecture, progress: Progress, out: Path) -> None:
    if os.geteuid() != 0:
        raise BootpackError(f"{where}: building a root tree from a container image needs root: "
                            "its files must keep their owners (run bootpack build as root, e.g. "
                            "with sudo)")
    tree = out / "tree"
    # dracut runs in the image itself, for its own kernel (under qemu-user for a foreign CPU)
    kver, initrds = run_netboot(client, image_id, family, options, overlay, tree, where=where,
                                mtime=mtime, architecture=architecture, progress=progress)
    kernel = tree / "boot" / f"vmlinuz-{kver}"
    if not kernel.is_file():
        raise BootpackError(f"{where}: /boot/vmlinuz-{kver} is missing from the image; add "
                            f"packages = [\"{family.kernel_package(architecture)}\"]")
    shutil.copyfile(kernel, out / "vmlinuz")
    command = shlex.split(options.compress)

    def compress(chunks: Iterator[bytes], target: Path, what: str) -> None:
        """The initrds' compression (options.compress), run here on a byte stream."""
        run_fed([need(command[0], command[0]), *command[1:], "-f", "-o", target], chunks,
                progress=progress, what=what)

    if options.live_init:
        # the staged live init as a reproducible cpio, compressed as dracut's initrds are
        compress(cpio.cpio_chunks(tree / WORK / LIVE_INIT, mtime), out / initrd_file("live"),
                 "packing the live initrd")
    for mode, initrd in initrds.items():
        if options.compress_on_host:
            # fed on stdin as dracut feeds it: with the size unknown zstd picks the same
            # parameters, so the bytes are dracut's own (but for its record of its command line)
            compress(read_chunks(initrd), out / initrd_file(mode),
                     f"compressing the {mode} initrd (zstd, on this machine)")
            initrd.unlink()
        else:
            os.replace(initrd, out / initrd_file(mode))
    shutil.rmtree(tree / WORK)
    clean_tree(tree)
    add_readonly_support(tree)
    add_boot_report(tree)
    init = find_init(tree)
    (out / "init").write_text(f"{init or ''}\n")
    (out / "kver").write_text(f"{kver}\n")
    (out / "size").write_text(f"{tree_size(tree)}\n")


def provenance(built: BuiltImage) -> ImageProvenance:
    """What bundle.json records about a built image: where it came from and its cache keys."""
    return ImageProvenance(source_image=built.source, kernel_version=built.kernel_version,
                           steps={step: f"{PREFIX}{key}" for step, key in sorted(built.keys.items())})


def _tag(bundle: str, image: str) -> str:
    """A valid Docker tag for a Dockerfile-built image, e.g. bootpack-livenet-debian:latest."""
    words = re.sub(r"[^a-z0-9]+", "-", f"{bundle}-{image}".lower()).strip("-")
    return f"bootpack-{words}:latest"


def build_image(loaded: LoadedSpec, name: str, *, cache: Cache, mtime: int,
                progress: Progress = SILENT, client: docker.DockerClient | None = None) -> BuiltImage:
    """Make a container-based spec image bootable for the root modes its entries use."""
    spec = loaded.spec
    image = spec.images[name]
    where = f"images.{name}"
    modes = image_modes(spec, name)
    client = client or docker_client()
    source = image.from_ or image.dockerfile
    need_emulation(image.architecture, where)
    with progress.step(f"{name}: container image {source} ({image.architecture})"):
        image_id = resolve_image(
            client, where=where, ref=image.from_,
            dockerfile=loaded.resolve(image.dockerfile) if image.dockerfile else None,
            tag=_tag(spec.bundle.name, name), architecture=image.architecture,
            progress=progress)
    family = families.detect_family(_os_release(cache, client, image_id), where)
    options = netboot_options(family, image.packages, modes, image.drivers,
                              foreign=image.architecture != build_host_architecture())
    overlay = loaded.resolve(image.overlay) if image.overlay else None
    inputs: dict[str, Any] = {
        "format": ROOTFS_FORMAT, "image": image_id, "family": family.name, "options": asdict(options),
        "overlay": digest_tree(overlay) if overlay else None, "source_date_epoch": mtime,
    }
    built = BuiltImage(name=name, kernel=Path(), source=image_id)
    entry = _cached(cache, "rootfs", inputs, f"{name}: packages, overlay and dracut in the image",
                    progress, lambda out: _build_rootfs(client, image_id, family, options, overlay,
                                                        where, mtime, image.architecture,
                                                        progress, out))
    built.keys["rootfs"], built.hits["rootfs"] = entry.key, entry.hit
    rootfs = entry.path
    built.kernel = rootfs / "vmlinuz"
    built.kernel_version = (rootfs / "kver").read_text().strip()
    built.initrds = {m: rootfs / initrd_file(m) for m in INITRD_MODES
                     if (rootfs / initrd_file(m)).is_file()}
    tree = built.root = rootfs / "tree"
    init = (rootfs / "init").read_text().strip() or None
    if modes & {"live", "nfs", "ramdisk"} and init is None:
        raise BootpackError(f"{where}: the image has no /sbin/init; add \"systemd-sysv\" to its "
                            "packages")

    if "live" in modes:
        squeeze = image.squashfs_compression
        sq_inputs = {"rootfs": entry.key, "options": list(squashfs.options(squeeze)),
                     "source_date_epoch": mtime}
        sq = _cached(cache, "squashfs", sq_inputs, f"{name}: squashfs ({squeeze}) of the root tree",
                     progress, lambda out: squashfs.make_squashfs(tree, out / "squashfs.img", mtime,
                                                                  progress, squeeze))
        built.keys["squashfs"], built.hits["squashfs"] = sq.key, sq.hit
        built.squashfs = sq.path / "squashfs.img"
    if "ramdisk" in modes:
        compression = image.ramdisk_compression
        rd_inputs = {"rootfs": entry.key, "compress": list(ramdisk.COMPRESSORS[compression]),
                     "init": init, "source_date_epoch": mtime}

        def make(out: Path) -> None:
            size = ramdisk.make_ramdisk(tree, out / "ramdisk.img", mtime, init, progress,
                                        compression)
            (out / "unpacked-size").write_text(f"{size}\n")

        rd = _cached(cache, "ramdisk", rd_inputs,
                     f"{name}: ramdisk (cpio, {compression}) of the root tree", progress, make)
        built.keys["ramdisk"], built.hits["ramdisk"] = rd.key, rd.hit
        built.ramdisk = rd.path / "ramdisk.img"
        unpacked = int((rd.path / "unpacked-size").read_text())
        if unpacked > ramdisk.WARN_BYTES or built.ramdisk.stat().st_size > ramdisk.WARN_BYTES:
            progress.warn(f"{where}: the ramdisk unpacks to {unpacked / 2**30:.1f} GiB; firmware "
                          "and kernels often fail past about 3-4 GiB. Slim the image or use "
                          "root = 'live' or 'nfs'")
    if "nfs" in modes:
        built.tree = tree
    return built


OS_RELEASE = "os-release"


def _os_release(cache: Cache, client: docker.DockerClient, image_id: str) -> str:
    """The image's os-release text ("" when it has none), cached by image id (a content digest):
    reading it from the image means creating a container, 0.3-0.7 s of a 2 s rebuild."""
    def read(out: Path) -> None:
        text = read_file(client, image_id, ("/etc/os-release", "/usr/lib/os-release"))
        (out / OS_RELEASE).write_text(text or "", encoding="utf-8")

    entry = cache.get_or_build(OS_RELEASE, {"image": image_id}, read)
    return (entry.path / OS_RELEASE).read_text(encoding="utf-8")


def _cached(cache: Cache, step: str, inputs: dict[str, Any], title: str, progress: Progress,
            build: Callable[[Path], None]) -> CacheEntry:
    if cache.lookup(cache.key(step, inputs)) is not None:
        progress.info(f"{title} ... cached")
        return cache.get_or_build(step, inputs, build)
    with progress.step(title):
        return cache.get_or_build(step, inputs, build)


def build_images(loaded: LoadedSpec, *, cache: Cache | None = None, mtime: int,
                 progress: Progress = SILENT) -> dict[str, BuiltImage]:
    """Every used container-based image of the spec, built or taken from the cache."""
    names = container_images(loaded.spec)
    if not names:
        return {}
    cache = cache or Cache()
    client = docker_client()
    return {name: build_image(loaded, name, cache=cache, mtime=mtime, progress=progress,
                              client=client) for name in names}
