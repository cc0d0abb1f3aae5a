"""Making a container image network-bootable, inside a container run from it.

One container does it all, so nothing of the host leaks in: it installs the packages the user
asked for plus what the image's boot needs (families.Family.needs), copies the overlay over the
root, runs dracut for the image's own kernel with the modules an NFS root needs, and stages
bootpack's own live init (live-init.sh, busybox, the kernel's modules it loads) for a live root.
Its file system is then exported into a host folder; the kernel, the dracut initrd and the
staged live init (packed into a cpio on the host) are taken out of it.

While packages install, /usr/bin/dracut is diverted to a no-op, so kernel and dracut postinst
scripts do not spend a minute building an initrd we would throw away.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from ..errors import BootpackError
from ..files import walk
from ..progress import SILENT, Progress
from .docker_image import export_tree, remove_quietly
from .families import Family

WORK = ".bootpack"  # scratch folder at the container's root, removed from the exported tree
NO_KERNEL, NO_INIT, NO_DRIVER, NO_LIVE_MODULE = 64, 65, 66, 67
KERNEL_PACKAGES = ("linux-image", "linux-generic", "linux-virtual", "linux-kernel")
LIVE_INIT = "live-init"  # the live init's staged root, in WORK
# What the live init mounts: the squashfs on a loop device under an overlay.
LIVE_MODULES = ("squashfs", "loop", "overlay")


def live_init_script() -> str:
    """The live initrd's /init (shipped with bootpack, part of the rootfs step's cache key)."""
    return (Path(__file__).parent / "live-init.sh").read_text()


@dataclass(frozen=True)
class Initrd:
    """One dracut netboot initrd: the root mode it boots, the dracut modules it adds and those it
    leaves out beyond NetbootOptions.dracut_omit (--no-hostonly takes every module whose tools
    the image has)."""

    mode: str
    add: tuple[str, ...]
    omit: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetbootOptions:
    packages: tuple[str, ...]  # the user's and the needed ones, in install order
    initrds: tuple[Initrd, ...]  # one per dracut root mode; empty: none (ramdisk-only images)
    # systemd-networkd: livenet hangs with it (field notes). The others do nothing for a network
    # root (encrypted or NVDIMM disks, resume from a swap partition, LUN masking, virtiofs, and
    # qemu: QEMU's disk and CD drivers; its NIC driver is in NIC_DRIVERS).
    dracut_omit: tuple[str, ...] = ("systemd-networkd", "crypt", "nvdimm", "resume", "lunmask",
                                    "virtiofs", "qemu")
    compress: str = "zstd -19 -q -T0"  # dracut's own zstd level is 15
    # An image of another CPU than this machine's: dracut (under qemu-user) writes the cpio
    # uncompressed and the host compresses it with the same command at native speed (zstd -19
    # of an arm64 initrd under emulation took ~146 s at load ~8). The bytes are dracut's (but
    # for its record of its own command line), except with an early microcode cpio (x86 only):
    # it would be inside the compressed stream, out of the early loader's reach (the OS loads
    # microcode itself).
    compress_on_host: bool = False
    nics: tuple[str, ...] = ()  # NIC drivers to carry when the kernel has them
    drivers: tuple[str, ...] = ()  # the user's extra modules: the kernel must have each
    live_init: str = ""  # the live initrd's /init, staged in WORK/LIVE_INIT; "": no live root

    def dracut_args(self, initrd: Initrd) -> list[str]:
        # --no-hostonly: the initrd boots any machine, not only the build container.
        # --drivers "$drivers": only these modules instead of every storage, fs, HID and crypto
        # driver of the kernel; --omit-drivers "$omit": every Ethernet driver but these (dracut's
        # network module would add them all). Both lists are made in the container (below).
        # --nofscks: a network root is never checked by the initrd.
        omit = (*self.dracut_omit, *(m for m in initrd.omit if m not in self.dracut_omit))
        return ["--reproducible", "--no-hostonly", "--no-hostonly-cmdline", "--force", "--nofscks",
                *(["--no-compress"] if self.compress_on_host else ["--compress", self.compress]),
                "--add", " ".join(initrd.add), "--omit", " ".join(omit)]


def initrd_file(mode: str) -> str:
    """A root mode's initrd file name: in the netboot script's scratch folder and in the rootfs
    step's cache folder."""
    return f"initrd-{mode}.img"


# In the container, for kernel $kver: $w/deps, modprobe's dependency list of the user's drivers
# (the kernel must have each) and of bootpack's NICs the kernel has, and $w/wanted, those modules.
# Both initrds take their drivers from it.
_DRIVER_DEPS = r"""
w=/{work}
: > $w/deps; : > $w/wanted
for m in {drivers}; do
  if ! modprobe -S "$kver" --show-depends "$m" >> $w/deps 2>/dev/null; then
    echo "bootpack: the image's kernel $kver has no module $m" >&2; exit {no_driver}
  fi
  echo "$m" >> $w/wanted
done
for m in {nics}; do
  if modprobe -S "$kver" --show-depends "$m" >> $w/deps 2>/dev/null; then echo "$m" >> $w/wanted; fi
done
"""

# For dracut: $drivers, the wanted modules, and $omit, every network device and md/device-mapper
# driver that is neither wanted nor needed by a wanted one, except what dracut's ip= options use
# (PHYs, bonding, team, VLAN, macvlan, ipvlan), and NFS over RDMA (bootpack mounts over TCP; it
# pulls the InfiniBand core). Module names as kmod compares them: '-' is '_'.
_DRACUT_DRIVERS = r"""
name='{{n=$NF; sub(/.*\//,"",n); sub(/\.ko.*/,"",n); gsub(/-/,"_",n); print n}}'
awk '$1=="insmod"' $w/deps | awk "$name" | sort -u > $w/keep
find "/lib/modules/$kver/kernel/drivers/net" "/lib/modules/$kver/kernel/drivers/md" -name '*.ko*' \
  | grep -Ev '/drivers/net/(phy|mdio|pcs|bonding|team|ipvlan)/|/(macvlan|mii|mdio|net_failover)\.ko' \
  | awk "$name" | {{ cat; echo rpcrdma; }} | sort -u | comm -23 - $w/keep > $w/omit
drivers=$(tr '\n' ' ' < $w/wanted); omit=$(tr '\n' ' ' < $w/omit)
"""


# In the container, for kernel $kver: bootpack's live init staged in /WORK/LIVE_INIT, where /init
# already is (the host packs the folder into a cpio): the modules the live root needs
# (LIVE_MODULES; sunrpc too when the image has the NFS client, see below) and the drivers of
# _DRIVER_DEPS, each with its dependencies and firmware; depmod's index of them;
# /etc/bootpack/modules, what /init loads besides the drivers of the devices it finds; and
# busybox-static with a link per applet.
# sunrpc: an image with the NFS client (nfs-common) mounts rpc_pipefs in its booted system; left
# to the booted system, sunrpc loads from the squashfs in the middle of its parallel start, and
# under load run-rpc_pipefs.mount hit systemd's 90 s timeout (docs/speed.md, round 2).
_LIVE_STAGE = r"""
w=/{work}
live="{live}"
if [ -e /sbin/mount.nfs ] || [ -e /usr/sbin/mount.nfs ]; then live="$live sunrpc"; fi
: > $w/live-deps
for m in $live; do
  if ! modprobe -S "$kver" --show-depends "$m" >> $w/live-deps 2>/dev/null; then
    echo "bootpack: the image's kernel $kver has no module $m, which a live root needs" >&2
    exit {no_live}
  fi
done
if [ -f $w/deps ]; then cat $w/deps >> $w/live-deps; fi
s=/{work}/{stage}
mkdir -p $s/bin $s/etc/bootpack $s/proc $s/sys $s/dev $s/run $s/sysroot $s/tmp
cp $w/tools/bin/busybox $s/bin/busybox
for a in $($s/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox $s/bin/$a; done
awk '$1=="insmod" {{print $2}}' $w/live-deps | sort -u | while read -r f; do
  cp --parents "$f" $s
  for fw in $(modinfo -F firmware "$f"); do
    for x in "/lib/firmware/$fw" "/lib/firmware/$fw.xz" "/lib/firmware/$fw.zst"; do
      if [ -e "$x" ]; then cp --parents "$x" $s; fi
    done
  done
done
mkdir -p "$s/lib/modules/$kver"
cp "/lib/modules/$kver"/modules.order "/lib/modules/$kver"/modules.builtin* "$s/lib/modules/$kver/"
depmod -b $s "$kver"
echo $live > $s/etc/bootpack/modules
"""


def netboot_script(family: Family, options: NetbootOptions) -> str:
    lines = ["#!/bin/sh", "set -eu", "cd /"]
    if not any(p.startswith(KERNEL_PACKAGES) for p in options.packages):
        # Fail before spending minutes on packages when no kernel can appear.
        lines += ['if [ -z "$(ls /lib/modules 2>/dev/null)" ]; then',
                  f"  echo 'bootpack: no kernel in /lib/modules' >&2; exit {NO_KERNEL}", "fi"]
    if options.packages:
        lines += [
            "dpkg-divert --quiet --local --rename --divert /usr/bin/dracut.bootpack "
            "--add /usr/bin/dracut" if family.name == "debian" else ":",
            "printf '#!/bin/sh\\nexit 0\\n' > /usr/bin/dracut && chmod 755 /usr/bin/dracut",
            family.install_script(list(options.packages)).strip(),
            "rm -f /usr/bin/dracut",
            "dpkg-divert --quiet --local --rename --remove /usr/bin/dracut"
            if family.name == "debian" else ":",
        ]
    if options.live_init:
        if not options.packages:
            lines.append(family.update)
        lines.append(family.unpack_script([family.static_busybox], f"/{WORK}/tools"))
    if options.packages or options.live_init:
        lines.append(family.clean)
    lines += [
        f"if [ -d /{WORK}/overlay ]; then cp -a /{WORK}/overlay/. /; fi",
        "kver=$(ls -1 /lib/modules 2>/dev/null | sort -V | tail -n 1)",
        'if [ -z "$kver" ] || [ ! -e "/boot/vmlinuz-$kver" ]; then',
        f"  echo 'bootpack: no kernel in /boot and /lib/modules' >&2; exit {NO_KERNEL}",
        "fi",
        f'echo "$kver" > /{WORK}/kver',
        f"if [ ! -e /sbin/init ]; then echo 'bootpack: no /sbin/init' >&2; exit {NO_INIT}; fi",
    ]
    pick = bool(options.nics or options.drivers)
    if pick and (options.initrds or options.live_init):
        lines.append(_DRIVER_DEPS.format(
            work=WORK, drivers=" ".join(shlex.quote(d) for d in options.drivers),
            nics=" ".join(shlex.quote(d) for d in options.nics), no_driver=NO_DRIVER).rstrip())
    if options.initrds:
        restrict = ""
        if pick:
            lines.append(_DRACUT_DRIVERS.format().rstrip())
            restrict = ' --drivers "$drivers" --omit-drivers "$omit"'
        for initrd in options.initrds:
            lines.append(f'dracut {shlex.join(options.dracut_args(initrd))}{restrict} '
                         f'--kver "$kver" /{WORK}/{initrd_file(initrd.mode)}')
    if options.live_init:
        lines.append(_LIVE_STAGE.format(work=WORK, stage=LIVE_INIT, live=" ".join(LIVE_MODULES),
                                        no_live=NO_LIVE_MODULE).rstrip())
    return "\n".join(lines) + "\n"


def _work_archive(script: str, overlay: Path | None, mtime: int, live_init: str = "") -> bytes:
    """The scratch folder as a tar for put_archive: the script, the overlay (owned by root) and
    the live init."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)

        def add_file(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, mtime
            tar.addfile(info, io.BytesIO(data))

        add_dir(WORK)
        add_file(f"{WORK}/netboot.sh", script)
        if live_init:
            add_dir(f"{WORK}/{LIVE_INIT}")
            add_file(f"{WORK}/{LIVE_INIT}/init", live_init)
        if overlay is not None:
            add_dir(f"{WORK}/overlay")
            for path in walk(overlay):
                member = tar.gettarinfo(str(path), f"{WORK}/overlay/{path.relative_to(overlay)}")
                member.uid = member.gid = 0
                member.uname = member.gname = "root"
                member.mtime = mtime
                if member.isreg():
                    with path.open("rb") as f:
                        tar.addfile(member, f)
                else:
                    tar.addfile(member)
    return raw.getvalue()


def run_netboot(client: docker.DockerClient, image_id: str, family: Family, options: NetbootOptions,
                overlay: Path | None, target: Path, *, where: str, mtime: int,
                architecture: str = "x86_64",
                progress: Progress = SILENT) -> tuple[str, dict[str, Path]]:
    """Run the netboot script in a container from image_id and export its file system to target.

    Returns (kernel version, root mode -> path of its dracut initrd inside target). The staged
    live init, if any, is target/WORK/LIVE_INIT."""
    script = netboot_script(family, options)
    for line in script.splitlines():
        progress.detail(f"[container] {line}")
    container: Any = None
    try:
        container = client.containers.create(
            image_id, entrypoint=["/bin/sh", f"/{WORK}/netboot.sh"], command=[], user="0",
            working_dir="/", environment={"SOURCE_DATE_EPOCH": str(mtime), "LC_ALL": "C.UTF-8"},
            labels={"org.bootpack.step": "netboot"})
        container.put_archive("/", _work_archive(script, overlay, mtime, options.live_init))
        container.start()
        log: list[str] = []
        for raw in container.logs(stream=True, follow=True):
            for line in raw.decode(errors="replace").splitlines():
                log.append(line)
                progress.detail(line)
        code = int(container.wait()["StatusCode"])
        tail = "\n".join(log[-30:])
        if code == NO_KERNEL:
            raise BootpackError(
                f"{where}: the image has no kernel (nothing in /boot and /lib/modules); add "
                f"packages = [\"{family.kernel_package(architecture)}\"] to the image or install it in the "
                "Dockerfile")
        if code == NO_INIT:
            raise BootpackError(f"{where}: the image has no /sbin/init; add \"systemd-sysv\" to "
                                "its packages (or install an init system in the Dockerfile)")
        if code == NO_LIVE_MODULE:
            missing = next((line.split(" has no module ", 1)[-1].split(",")[0]
                            for line in reversed(log) if "has no module" in line), "?")
            raise BootpackError(f"{where}: the image's kernel has no module {missing!r}, which a "
                                "live root needs (squashfs, loop and overlay, as modules or built "
                                "in); use a distribution kernel or root = 'nfs' or 'ramdisk'")
        if code == NO_DRIVER:
            missing = next((line.rsplit(" ", 1)[-1] for line in reversed(log)
                            if "has no module" in line), "?")
            raise BootpackError(f"{where}.drivers: the image's kernel has no module {missing!r}; "
                                "check the name (modinfo NAME in the image) or remove it")
        if code != 0:
            raise BootpackError(f"{where}: making the image network-bootable failed (exit status "
                                f"{code}) in a container of {image_id[:19]}:\n{tail}")
        progress.detail("exporting the container's file system")
        export_tree(container, target, progress)
    except docker.errors.DockerException as exc:
        raise BootpackError(f"{where}: Docker failed while making the image bootable: {exc}") from None
    finally:
        if container is not None:
            remove_quietly(container)
    kver = (target / WORK / "kver").read_text().strip()
    initrds = {i.mode: target / WORK / initrd_file(i.mode) for i in options.initrds}
    absent = [mode for mode, path in initrds.items() if not path.is_file()]
    if absent:
        raise BootpackError(f"{where}: dracut made no initrd for {', '.join(absent)} in a "
                            f"container of {image_id[:19]}")
    if options.live_init and not (target / WORK / LIVE_INIT / "bin" / "busybox").is_file():
        raise BootpackError(f"{where}: the live init was not staged (no busybox) in a container "
                            f"of {image_id[:19]}")
    return kver, initrds
