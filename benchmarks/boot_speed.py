"""Benchmark: how fast a machine boots from bootpack's bundle against a hand-made, seed-style tree
built from the same image, in the same run, with the same QEMU.

    .venv/bin/python -m benchmarks.boot_speed [--repeat N] [--entries live,ramdisk] [--work DIR]

Builds the livenet example (Debian 12 from its Dockerfile) with `bootpack build`, then a
seed-style tree from the very same root tree, the way the seed documents do it by hand
(/work/shared/seeds, 004 for live, 001/002 for a RAM-disk root):
  - pxelinux.0 (plain, TFTP), pxelinux.cfg/01-MAC per machine, no menu (boots at once);
  - a generic gzip dracut initrd with livenet (`dracut --no-hostonly --gzip --add "livenet
    dmsquash-live network-legacy" --omit systemd-networkd`: the field notes' working recipe on
    Debian 12, where the plain `--add livenet` of seed 004 hangs in systemd-networkd);
  - a gzip squashfs (mksquashfs defaults) fetched by livenet over HTTP;
  - the RAM-disk root as a gzip newc cpio of the tree (`find | cpio -H newc | gzip`);
  - kernel and initrds over TFTP.
bootpack's bundle boots as its known hosts (per-host files, no menu either), from the boot file
its own DHCP configs hand a BIOS client whose PXE ROM is iPXE, as QEMU's is (user class "iPXE"):
the URL of its iPXE script (render.dhcp.bios_ipxe_file), so iPXE fetches kernel and initrd.

Both trees are served the same way: QEMU's user-mode network (its DHCP and TFTP server; never
the host's network) and an HTTP server in this process bound to 127.0.0.1, which the VM reaches
as 10.0.2.2. Each pair of boots being compared runs back to back, never in parallel. Phases come
from a packet capture of the VM's NIC (QEMU filter-dump: DHCP, TFTP requests and transfers),
the HTTP server's own log (request start and end) and timestamped serial lines:

  firmware        power-on -> the NBP (pxelinux.0) or iPXE script is requested: SeaBIOS,
                  iPXE ROM, DHCP
  loader          that request -> kernel requested: ldlinux.c32, config files, iPXE scripts
  transfer        kernel requested -> initrd fully received
  to root fetch   initrd received -> squashfs requested (kernel start, initrd, udev, DHCP)
  root fetch      squashfs requested -> received
  to marker       root received (ramdisk: initrd received) -> the example's systemd marker unit

Writes benchmarks/results/boot_speed.json (benchmarks/report.py). Takes about 10 min for the
builds on a fresh cache plus about 2 x repeat x 1.5 min per entry under TCG on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from benchmarks.report import Figure, write
from bootpack.bundle import layout
from bootpack.render.dhcp import bios_ipxe_file
from bootpack.spec import parse_spec
from bootpack.spec.site import Site
from tests.support.vm import QEMU

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "livenet"
MARKER = "BOOTPACK-BOOTED"  # printed by the example's bootpack-marker.service
MACS = {"live": "52:54:00:b5:00:01", "ramdisk": "52:54:00:b5:00:02"}
GUEST_HOST = "10.0.2.2"  # the host as QEMU's user-mode network shows it to the VM
MEMORY_MB = 3072  # the ramdisk entry unpacks the whole ~750 MB root into RAM
SEED_DRACUT = ["--no-hostonly", "--no-hostonly-cmdline", "--force", "--gzip",
               "--add", "livenet dmsquash-live network-legacy", "--omit", "systemd-networkd"]
# What the issue states as today's figure and the goal, per measure.
GOALS = {"live": ("<= 0.5x", 0.5, "~1.0x"), "ramdisk": ("<= 0.6x", 0.6, "~1.0x")}
INITRD_GOAL = ("<= 20 MB", 20.0, "50 MB")


# --- serving ------------------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    start: float  # wall clock (time.time), like the packet capture
    end: float
    size: int


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[Request]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        start = time.time()
        super().do_GET()
        self.requests.append(Request(self.path, start, time.time(), 0))

    def copyfile(self, source: Any, outputfile: Any) -> None:
        outputfile.flush()
        self.connection.sendfile(source)  # the kernel copies; no GIL in the way of the VM


@contextlib.contextmanager
def http_server(root: Path, port: int) -> Iterator[list[Request]]:
    """Serve root on 127.0.0.1:port (only loopback: the VM reaches it through QEMU's user net)."""
    log: list[Request] = []
    handler = type("Handler", (_Handler,), {"requests": log})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield log
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- packet capture -----------------------------------------------------------------------------


@dataclass
class Packet:
    time: float
    src_port: int
    dst_port: int
    payload: bytes


def udp_packets(pcap: Path) -> list[Packet]:
    """UDP/IPv4 packets of a classic pcap file (what QEMU's filter-dump writes)."""
    data = pcap.read_bytes() if pcap.exists() else b""
    out: list[Packet] = []
    offset = 24
    while offset + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack_from("<IIII", data, offset)
        frame = data[offset + 16: offset + 16 + incl]
        offset += 16 + incl
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        ihl = (frame[14] & 0x0F) * 4
        udp = 14 + ihl
        src, dst = struct.unpack_from("!HH", frame, udp)
        out.append(Packet(sec + usec / 1e6, src, dst, frame[udp + 8:]))
    return out


@dataclass
class Transfer:
    name: str
    start: float
    end: float


def tftp_transfers(packets: list[Packet]) -> list[Transfer]:
    """Each TFTP read request, from its RRQ to the last packet of its client port."""
    transfers: dict[int, Transfer] = {}
    order: list[Transfer] = []
    for p in packets:
        if p.dst_port == 69 and p.payload[:2] == b"\x00\x01":
            name = p.payload[2:].split(b"\0", 1)[0].decode(errors="replace")
            t = Transfer(name, p.time, p.time)
            transfers[p.src_port] = t
            order.append(t)
        else:
            # the server answers from its own port to the client's: the client port names it
            for port in (p.src_port, p.dst_port):
                if port != 69 and port in transfers:
                    transfers[port].end = p.time
                    break
    return order


def first_dhcp(packets: list[Packet]) -> float | None:
    return next((p.time for p in packets if p.dst_port == 67), None)


# --- booting ------------------------------------------------------------------------------------


@dataclass
class Run:
    variant: str  # "seed" or "bootpack"
    entry: str
    start: float  # wall clock at QEMU start
    total: float | None  # seconds to the marker, None: not reached
    phases: dict[str, float] = field(default_factory=dict)
    lines: list[tuple[float, str]] = field(default_factory=list)

    def summary(self) -> str:
        phases = ", ".join(f"{k} {v:.1f}" for k, v in self.phases.items())
        total = f"{self.total:.1f} s" if self.total is not None else "NO MARKER"
        return f"{self.variant:>8} {self.entry:<8} {total} ({phases})"


def boot(root: Path, bootfile: str, mac: str, variant: str, entry: str, requests: list[Request],
         logs: Path, timeout: float) -> Run:
    """PXE-boot a VM from root over QEMU's user network until the marker; phases from the logs."""
    tag = f"{variant}-{entry}-{int(time.time())}"
    pcap = logs / f"{tag}.pcap"
    command = [QEMU, "-accel", "tcg", "-m", str(MEMORY_MB), "-display", "none", "-nodefaults",
               "-serial", "stdio", "-boot", "n", "-no-reboot",
               "-netdev", f"user,id=n0,tftp={root},bootfile={bootfile}",
               "-object", f"filter-dump,id=f0,netdev=n0,file={pcap}",
               "-device", f"virtio-net-pci,netdev=n0,mac={mac}"]
    del requests[:]
    lines: list[tuple[float, str]] = []
    start = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    marker: float | None = None

    def read() -> None:
        nonlocal marker
        assert proc.stdout is not None
        for raw in proc.stdout:
            now = time.time()
            text = raw.decode(errors="replace").rstrip()
            lines.append((now, text))
            if MARKER in text and marker is None:
                marker = now

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while marker is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # the failed-units line right before the marker
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    reader.join(5)
    (logs / f"{tag}.serial.log").write_text(
        "".join(f"{t - start:8.2f} {text}\n" for t, text in lines))
    (logs / f"{tag}.http.log").write_text("".join(
        f"{r.start - start:8.2f} {r.end - start:8.2f} {r.path}\n" for r in requests))
    run = Run(variant, entry, start, marker - start if marker else None, lines=lines)
    run.phases = phases(run, udp_packets(pcap), list(requests))
    pcap.unlink(missing_ok=True)  # big (the whole root passes through it); phases are kept
    return run


def phases(run: Run, packets: list[Packet], requests: list[Request]) -> dict[str, float]:
    """Seconds per phase (see the module docstring) from the capture and the HTTP log."""
    tftp = tftp_transfers(packets)
    out: dict[str, float] = {}
    files: list[Transfer] = [*tftp, *(Transfer(r.path, r.start, r.end) for r in requests)]
    nbp = min((t.start for t in files if t.name.endswith((".0", ".ipxe"))), default=None)
    kernel = next((t for t in sorted(files, key=lambda t: t.start) if "vmlinuz" in t.name), None)
    initrd = [t for t in files if t.name.endswith((".img", ".gz")) and "squashfs" not in t.name]
    root = next((t for t in files if "squashfs" in t.name), None)
    marker = run.start + run.total if run.total is not None else None
    dhcp = first_dhcp(packets)
    if dhcp is not None:
        out["first DHCP"] = dhcp - run.start
    if nbp is not None:
        out["firmware"] = nbp - run.start
        if kernel is not None:
            out["loader"] = kernel.start - nbp
    initrd_end = max((t.end for t in initrd), default=None)
    if kernel is not None and initrd_end is not None:
        out["transfer"] = initrd_end - kernel.start
    after = initrd_end
    if root is not None and initrd_end is not None:
        out["to root fetch"] = root.start - initrd_end
        out["root fetch"] = root.end - root.start
        after = root.end
    if marker is not None and after is not None:
        out["to marker"] = marker - after
    return out


# --- building -----------------------------------------------------------------------------------


def ipxe_rom_bootfile(out: Path) -> str:
    """What the bundle at `out` has its DHCP hand a BIOS client whose PXE ROM is iPXE."""
    spec = parse_spec(json.loads((out / layout.SPEC).read_text()))
    return bios_ipxe_file(spec, Site.from_spec(spec))


def bundle_spec(work: Path, port: int) -> Path:
    """The example, served at 10.0.2.2:PORT, with one known host per entry (boots at once)."""
    data = tomllib.loads((EXAMPLE / "spec.toml").read_text())
    data["images"]["debian"]["dockerfile"] = str(EXAMPLE / "Dockerfile")
    data["server"]["http_port"] = port
    data["hosts"] = [{"name": f"bench-{entry}", "mac": mac, "entry": entry}
                     for entry, mac in MACS.items()]
    spec = work / "spec.toml"
    spec.write_text(tomli_w.dumps(data))
    return spec


def build_bundle(spec: Path, out: Path) -> tuple[Path, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bootpack", "build", str(spec), "--output",
                             str(out)], capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"bootpack build failed:\n{result.stderr[-3000:]}")
    return out, time.monotonic() - start


def rootfs_tree(out: Path) -> tuple[Path, str]:
    """The cached root tree the bundle's image was made from, and its kernel version."""
    from bootpack.images.cache import Cache

    manifest = json.loads((out / "bundle.json").read_text())
    image = manifest["images"]["debian"]
    key = image["steps"]["rootfs"].split(":", 1)[1]
    return Cache().path(key) / "tree", image["kernel_version"]


# What the seed's dracut livenet initrd needs in the image beyond what bootpack's tree has
# (bootpack's live root has its own init: the tree carries dracut only for its NFS entry).
SEED_PACKAGES = ["dracut", "dracut-network", "dracut-live", "curl", "isc-dhcp-client",
                 "iputils-arping", "procps", "dbus"]


def seed_initrd(tree: Path, kver: str, target: Path, scratch: Path) -> float:
    """The seed's generic gzip dracut initrd, made by the image's own dracut in a chroot over an
    overlay of the cached tree (which stays untouched), after installing the packages it needs
    there (this machine's network and resolver). Seconds taken."""
    upper, workdir, merged = scratch / "upper", scratch / "work", scratch / "merged"
    for d in (upper, workdir, merged):
        d.mkdir(parents=True, exist_ok=True)
    dracut = " ".join(f"'{a}'" for a in SEED_DRACUT)
    script = (f"set -e; mount -t overlay overlay -o lowerdir={tree},upperdir={upper},"
              f"workdir={workdir} {merged}; mount -t proc proc {merged}/proc; "
              f"mount -t sysfs sys {merged}/sys; mount --rbind /dev {merged}/dev; "
              f"mount -t tmpfs tmp {merged}/var/tmp; cp /etc/resolv.conf {merged}/etc/resolv.conf; "
              f"chroot {merged} sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive "
              f"apt-get install -y -q --no-install-recommends {' '.join(SEED_PACKAGES)}'; "
              f"chroot {merged} dracut {dracut} --kver {kver} /seed-initrd.img")
    start = time.monotonic()
    result = subprocess.run(["unshare", "--mount", "--fork", "sh", "-c", script],
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"seed dracut failed:\n{result.stderr[-3000:]}")
    shutil.move(str(upper / "seed-initrd.img"), target)
    shutil.rmtree(scratch)
    return time.monotonic() - start


def gzip_cpio(tree: Path, target: Path) -> None:
    """`find . | cpio -o -H newc | gzip` of the tree, plus an /init link to its init (a second,
    concatenated cpio: the kernel unpacks them in turn)."""
    with tempfile.TemporaryDirectory() as extra:
        Path(extra, "init").symlink_to("sbin/init")
        script = (f"{{ (cd {tree} && find . | cpio -o -H newc --quiet); "
                  f"(cd {extra} && echo init | cpio -o -H newc --quiet); }} | gzip -c > {target}")
        subprocess.run(["sh", "-c", script], check=True)


def seed_tree(tree: Path, kver: str, seed: Path, port: int, entries: list[str],
              work: Path) -> dict[str, float]:
    """The hand-made tree (see the module docstring). Seconds per build step."""
    seconds: dict[str, float] = {}
    seed.mkdir(parents=True, exist_ok=True)
    shutil.copyfile("/usr/lib/PXELINUX/pxelinux.0", seed / "pxelinux.0")
    shutil.copyfile("/usr/lib/syslinux/modules/bios/ldlinux.c32", seed / "ldlinux.c32")
    shutil.copyfile(tree.parent / "vmlinuz", seed / "vmlinuz")  # the tree keeps no /boot
    cfg = seed / "pxelinux.cfg"
    cfg.mkdir(exist_ok=True)
    appends = {
        "live": ("initramfs.img", f"root=live:http://{GUEST_HOST}:{port}/squashfs.img "
                 "rd.live.overlay.overlayfs=1 ip=dhcp rd.neednet=1 console=ttyS0"),
        "ramdisk": ("rootfs.gz", "console=ttyS0"),
    }
    for entry in entries:
        initrd, append = appends[entry]
        mac = MACS[entry].replace(":", "-")
        (cfg / f"01-{mac}").write_text(f"default {entry}\nlabel {entry}\n  kernel vmlinuz\n"
                                       f"  append initrd={initrd} {append}\n")
    if "live" in entries and not (seed / "initramfs.img").exists():
        seconds["dracut"] = seed_initrd(tree, kver, seed / "initramfs.img", work / "overlay")
    if "live" in entries and not (seed / "squashfs.img").exists():
        start = time.monotonic()
        subprocess.run(["mksquashfs", str(tree), str(seed / "squashfs.img"), "-noappend",
                        "-no-progress", "-quiet"], check=True)
        seconds["squashfs"] = time.monotonic() - start
    if "ramdisk" in entries and not (seed / "rootfs.gz").exists():
        start = time.monotonic()
        gzip_cpio(tree, seed / "rootfs.gz")
        seconds["ramdisk"] = time.monotonic() - start
    return seconds


# --- the benchmark ------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def phase_medians(runs: list[Run], entry: str, variant: str) -> str:
    mine = [r for r in runs if r.entry == entry and r.variant == variant]
    names = [n for n in mine[0].phases if n != "first DHCP"] if mine else []
    return ", ".join(f"{n} {median([r.phases[n] for r in mine if n in r.phases]):.1f}"
                     for n in names)


def figures(runs: list[Run], initrd_mb: float, sizes: dict[str, str]) -> list[Figure]:
    out: list[Figure] = []
    for entry in ("live", "ramdisk"):
        seed = [r.total for r in runs if r.entry == entry and r.variant == "seed" and r.total]
        ours = [r.total for r in runs if r.entry == entry and r.variant == "bootpack" and r.total]
        if not seed or not ours:
            continue
        ratio = median(ours) / median(seed)
        goal, limit, before = GOALS[entry]

        detail = (f"bootpack {median(ours):.1f} s ({', '.join(f'{v:.0f}' for v in ours)}; "
                  f"{phase_medians(runs, entry, 'bootpack')}) vs seed-style {median(seed):.1f} s "
                  f"({', '.join(f'{v:.0f}' for v in seed)}; {phase_medians(runs, entry, 'seed')}); BIOS, "
                  f"TCG, medians; {sizes.get(entry, '')}")
        out.append(Figure(f"{entry} entry: PXE power-on to systemd marker, bootpack / seed-style",
                          round(ratio, 2), "x", goal, before, ratio <= limit, detail))
    goal, limit, before = INITRD_GOAL
    out.append(Figure("dracut initrd of the example image", round(initrd_mb, 1), "MB", goal, before,
                      initrd_mb <= limit, sizes.get("initrd", "")))
    return out


def mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.boot_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2, help="boot pairs per entry")
    parser.add_argument("--entries", default="live,ramdisk", help="entries, comma-separated")
    parser.add_argument("--variants", default="seed,bootpack", help="which trees to boot")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to the marker")
    parser.add_argument("--work", type=Path, help="keep builds and logs here (reused if present)")
    parser.add_argument("--no-write", action="store_true", help="do not write results/*.json")
    args = parser.parse_args(argv)
    entries = [e for e in args.entries.split(",") if e]
    variants = [v for v in args.variants.split(",") if v]
    if os.geteuid() != 0:
        raise SystemExit("needs root (bootpack build of a container image, chroot for dracut)")
    from bootpack.images.baseimage import ensure_debian_image

    ensure_debian_image()
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="bp-boot-speed-")))
        work.mkdir(parents=True, exist_ok=True)
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        ports_file = work / "ports.json"
        ports = json.loads(ports_file.read_text()) if ports_file.exists() else \
            {"bootpack": free_port(), "seed": free_port()}
        ports_file.write_text(json.dumps(ports))
        out, seconds = build_bundle(bundle_spec(work, ports["bootpack"]), work / "out")
        print(f"bootpack build: {seconds:.0f} s", flush=True)
        tree, kver = rootfs_tree(out)
        seed = work / "seed"
        steps = seed_tree(tree, kver, seed, ports["seed"], entries, work)
        if steps:
            print("seed-style tree: " + ", ".join(f"{k} {v:.0f} s" for k, v in steps.items()),
                  flush=True)
        images = out / "tftpboot" / "images" / "debian"
        sizes = {
            "initrd": f"bootpack's dracut initrd (nfs) {mb(images / 'initrd-nfs.img'):.1f} MB (zstd); "
                      f"the live entry boots bootpack's own initrd, {mb(images / 'initrd-live.img'):.1f} MB; "
                      f"seed-style {mb(seed / 'initramfs.img'):.1f} MB (gzip)" if "live" in entries else "",
            "live": f"squashfs bootpack {mb(images / 'squashfs.img'):.0f} MB, seed-style "
                    f"{mb(seed / 'squashfs.img'):.0f} MB" if "live" in entries else "",
            "ramdisk": f"ramdisk bootpack {mb(images / 'ramdisk.img'):.0f} MB, seed-style "
                       f"{mb(seed / 'rootfs.gz'):.0f} MB" if "ramdisk" in entries else "",
        }
        for text in sizes.values():
            if text:
                print(text, flush=True)
        roots = {"seed": seed, "bootpack": out / "tftpboot"}
        # What each tree's DHCP hands QEMU's PXE ROM, which is iPXE (user class "iPXE"): the
        # seed's one pxelinux.0; for the bundle, what its own DHCP configs answer such a client.
        bootfiles = {"seed": "pxelinux.0", "bootpack": ipxe_rom_bootfile(out)}
        runs: list[Run] = []
        with http_server(seed, ports["seed"]) as seed_log, \
                http_server(out / "tftpboot", ports["bootpack"]) as bundle_log:
            served = {"seed": seed_log, "bootpack": bundle_log}
            for n in range(args.repeat):
                for entry in entries:
                    for variant in variants:
                        run = boot(roots[variant], bootfiles[variant], MACS[entry], variant,
                                   entry, served[variant], logs, args.timeout)
                        runs.append(run)
                        print(f"[{n + 1}/{args.repeat}] {run.summary()}", flush=True)
        result = figures(runs, mb(images / "initrd-nfs.img") if "live" in entries else 0.0, sizes)
        for f in result:
            print(f"{f.measure}: {f.value} {f.unit} (goal {f.goal}, met {f.met}); {f.detail}")
        if not args.no_write and set(variants) == {"seed", "bootpack"}:
            print(f"wrote {write('boot_speed', result)}")
        (work / "runs.json").write_text(json.dumps(
            [{"variant": r.variant, "entry": r.entry, "total": r.total, "phases": r.phases}
             for r in runs], indent=1))
        return 0 if all(r.total is not None for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
