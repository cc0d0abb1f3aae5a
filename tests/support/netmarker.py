"""A networked marker initramfs: like tests.marker, but it also uses the root the command line names.

- `root=live:URL`: brings up the NIC (virtio_net from Debian's kernel modules), gets an address
  over DHCP (busybox udhcpc), downloads URL over HTTP and prints its size and sha256;
- `root=nfs4:SERVER:PATH:...`: the same network start, then loads the NFS client modules, mounts
  SERVER:PATH read-only and `switch_root`s into it: the NFS root's own /init prints its marker;
- anything else (ramdisk): prints the command line and powers off, like tests.marker.

It stands in for a dracut initrd (issue 3 builds real ones) so the appliance's DHCP, TFTP, HTTP
and NFS can be proven end to end with a VM that boots in seconds.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from tests.support.marker import BUSYBOX, DIR, MARKER, Entries, busybox_bytes, debian_kernel, pack_initramfs

NFS_ROOT_MARK = f"{MARKER} nfs-root"
LIVE_MARK = f"{MARKER} live"
UP_MARK = f"{MARKER} up reported"
NFS_FILE = "BOOTPACK-NFS-ROOT"  # a file in the NFS root tree (tests.appliance_env puts it there)
WANTED_MODULES = ("virtio_pci", "virtio_net", "nfsv4")

INIT = f"""#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /tmp /newroot
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev 2>/dev/null
say() {{ echo "$*" > /dev/ttyS0; }}
CMDLINE=$($B cat /proc/cmdline)
say "{MARKER} cmdline: $CMDLINE"
ROOT=""
REPORT=""
NET=""
for w in $CMDLINE; do
  case "$w" in root=*) ROOT="${{w#root=}}";; bootpack.report=*) REPORT="${{w#bootpack.report=}}";; esac
done
net_up() {{
  NET=1
  for pass in 1 2; do
    for m in $($B cat /modules.order); do $B insmod /modules/$m 2>/dev/null; done
  done
  $B sleep 1
  $B ip link set lo up
  $B ip link set eth0 up
  $B udhcpc -i eth0 -n -q -t 10 -T 2 -s /udhcpc.script || say "{MARKER} dhcp failed"
  say "{MARKER} address: $($B ip -4 -o addr show dev eth0)"
}}
case "$ROOT" in
  live:*)
    URL="${{ROOT#live:}}"
    net_up
    if $B wget -q -O /tmp/squashfs.img "$URL"; then
      SUM=$($B sha256sum /tmp/squashfs.img | $B cut -d' ' -f1)
      say "{LIVE_MARK} fetched $($B wc -c < /tmp/squashfs.img) bytes sha256 $SUM"
    else
      say "{MARKER} live fetch failed: $URL"
    fi
    ;;
  nfs4:*)
    REST="${{ROOT#nfs4:}}"; SERVER="${{REST%%:*}}"; REST="${{REST#*:}}"; EXPORT="${{REST%%:*}}"
    net_up
    MYIP=$($B ip -4 -o addr show dev eth0 | $B sed -n 's/.* inet \\([0-9.]*\\).*/\\1/p')
    if $B mount -t nfs4 -o ro,vers=4.1,addr=$SERVER,clientaddr=$MYIP "$SERVER:$EXPORT" /newroot; then
      say "{MARKER} mounted $SERVER:$EXPORT"
      $B mount --move /dev /newroot/dev
      $B mount --move /proc /newroot/proc
      $B umount /sys 2>/dev/null
      exec $B switch_root /newroot /init
    fi
    say "{MARKER} nfs mount failed: $SERVER:$EXPORT"
    ;;
esac
if [ -n "$REPORT" ]; then
  # What bootpack's report unit does in a built image: tell the appliance this system is up.
  [ -n "$NET" ] || net_up
  UPTIME=$($B cut -d' ' -f1 /proc/uptime)
  if $B wget -q -O /dev/null "$REPORT?uptime=$UPTIME"; then say "{UP_MARK} after $UPTIME s"; fi
fi
say "{MARKER} done"
$B poweroff -f
"""

UDHCPC_SCRIPT = """#!/bin/busybox sh
B=/bin/busybox
case "$1" in
  bound|renew)
    $B ifconfig "$interface" "$ip" netmask "$subnet" up
    [ -n "$router" ] && $B route add default gw "${router%% *}" dev "$interface" 2>/dev/null
    ;;
esac
exit 0
"""

NFS_INIT = f"""#!/bin/busybox sh
B=/bin/busybox
[ -e /dev/ttyS0 ] || $B mount -t devtmpfs dev /dev
ROOTDEV=$($B awk '$2 == "/" {{print $1}}' /proc/mounts | $B tail -1)
echo "{NFS_ROOT_MARK}: /init running from $ROOTDEV; $($B cat /{NFS_FILE})" > /dev/ttyS0
# The network the initramfs brought up is still there: report up, as a built image's unit does
# (no wget -T: busybox-static 1.35's wget segfaults with it).
for w in $($B cat /proc/cmdline); do
  case "$w" in bootpack.report=*)
    UPTIME=$($B cut -d' ' -f1 /proc/uptime)
    $B wget -q -O /dev/null "${{w#bootpack.report=}}?uptime=$UPTIME" && \
      echo "{UP_MARK} after $UPTIME s" > /dev/ttyS0;;
  esac
done
echo "{MARKER} done" > /dev/ttyS0
$B poweroff -f
"""


def _module_closure(kernel_release: str) -> list[Path]:
    """Module files for WANTED_MODULES and their dependencies, dependencies first."""
    base = Path("/lib/modules") / kernel_release
    deps: dict[str, list[str]] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        deps[target] = rest.split()
    by_name = {Path(p).name.split(".ko")[0].replace("-", "_"): p for p in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        for dep in reversed(deps.get(path, [])):  # modules.dep lists the deepest last
            visit(dep)
        if path not in order:
            order.append(path)

    for name in WANTED_MODULES:
        visit(by_name[name])
    return [base / p for p in order]


def kernel_release() -> str:
    return re.sub(r"^vmlinuz-", "", debian_kernel().name)


@cache
def netmarker_initramfs(busybox: Path = BUSYBOX) -> bytes:
    modules = _module_closure(kernel_release())
    entries: Entries = {
        "bin": (DIR, b""), "bin/busybox": (0o100755, busybox_bytes(busybox)), "dev": (DIR, b""),
        "init": (0o100755, INIT.encode()), "modules": (DIR, b""),
        "modules.order": (0o100644, "".join(f"{p.name}\n" for p in modules).encode()),
        "newroot": (DIR, b""), "proc": (DIR, b""), "sys": (DIR, b""), "tmp": (0o041777, b""),
        "udhcpc.script": (0o100755, UDHCPC_SCRIPT.encode()),
    }
    for path in modules:
        entries[f"modules/{path.name}"] = (0o100644, path.read_bytes())
    return pack_initramfs(entries)


def nfs_root_tree(busybox: Path = BUSYBOX) -> dict[str, bytes]:
    """A tiny root tree for NFS: busybox and an /init that prints the NFS-root marker."""
    return {"init": NFS_INIT.encode(), "bin/busybox": busybox.read_bytes(), "proc/.keep": b"",
            "dev/.keep": b"", "newroot/.keep": b""}


def write_netmarker(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    kernel, initrd = folder / "vmlinuz", folder / "initrd.img"
    kernel.write_bytes(debian_kernel().read_bytes())
    initrd.write_bytes(netmarker_initramfs())
    return kernel, initrd
