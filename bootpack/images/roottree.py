"""Turning a container's exported file system into a root tree machines can boot.

`clean_tree` removes what Docker and the package manager leave behind (Docker's /.dockerenv,
/etc/hosts, /etc/resolv.conf and /etc/hostname, package lists and caches, logs with build times,
the machine-id) and empties /boot (the kernel and initrd are served separately). It keeps empty
/proc, /sys, /dev and /run: dracut's live root refuses a tree without /proc.

`add_readonly_support` makes the same tree boot clean from a read-only, shared NFS export. We do it
in the tree itself rather than with systemd.volatile=overlay: that option is applied by the
initrd's systemd-volatile-root.service, which runs before dracut's own NFS mount hook, so it would
find no root to cover. A tiny unit in the tree instead runs first thing in the real system when /
is read-only, and mounts an overlayfs over /etc and /var with its upper layer in /run (tmpfs), plus
a tmpfs on /tmp. Everything that writes during boot (journald's flush, random seed, tmpfiles, dhcp
leases, machine-id) then writes to RAM, and `systemctl --failed` stays empty. On a writable root
(live overlay, ramdisk) the unit's condition is false and it does nothing.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from ..files import walk

HOSTS = """127.0.0.1\tlocalhost
::1\t\tlocalhost ip6-localhost ip6-loopback
ff02::1\t\tip6-allnodes
ff02::2\t\tip6-allrouters
"""

VOLATILE_SCRIPT = "usr/local/lib/bootpack/volatile-root"
VOLATILE_UNIT = "etc/systemd/system/bootpack-volatile-root.service"
VOLATILE_WANTS = "etc/systemd/system/local-fs-pre.target.wants/bootpack-volatile-root.service"

VOLATILE_SH = """#!/bin/sh
# Installed by bootpack: writable /etc, /var and /tmp in RAM over a read-only (NFS) root.
set -e
for dir in /etc /var; do
    top="/run/bootpack-volatile$dir"
    mkdir -p "$top/upper" "$top/work"
    mount -t overlay overlay -o "lowerdir=$dir,upperdir=$top/upper,workdir=$top/work" "$dir"
done
# systemd bind-mounted a transient machine-id over the read-only /etc/machine-id; the overlay
# now hides that mount, so put the same id into the writable /etc.
if [ -s /run/machine-id ]; then
    cat /run/machine-id > /etc/machine-id
fi
mountpoint -q /tmp || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
"""

VOLATILE_SERVICE = f"""# Installed by bootpack: see /{VOLATILE_SCRIPT}
[Unit]
Description=Writable /etc, /var and /tmp in RAM over a read-only root
DefaultDependencies=no
ConditionPathIsReadWrite=!/
After=systemd-remount-fs.service
Before=local-fs-pre.target local-fs.target systemd-journal-flush.service systemd-random-seed.service
Before=systemd-tmpfiles-setup.service systemd-update-utmp.service
Wants=local-fs-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh /{VOLATILE_SCRIPT}

[Install]
WantedBy=local-fs-pre.target
"""

# Removed from every root tree (relative paths; globs allowed).
REPORT_SCRIPT = "usr/local/lib/bootpack/report-up"
REPORT_UNIT = "etc/systemd/system/bootpack-report-up.service"
REPORT_WANTS = "etc/systemd/system/multi-user.target.wants/bootpack-report-up.service"

REPORT_SH = """#!/bin/bash
# Installed by bootpack: tell the boot appliance this system is up (`bootpack status`), with its
# boot time. The URL comes from bootpack.report= on the kernel command line (entries[].report_up).
url=$(sed -n 's/.*bootpack\\.report=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
[ -n "$url" ] || exit 0
target="$url?uptime=$(cut -d' ' -f1 /proc/uptime)"
for try in 1 2 3 4 5; do
    if command -v curl >/dev/null; then
        curl -fsS -m 5 -o /dev/null "$target" && exit 0
    elif command -v wget >/dev/null; then
        wget -q -T 5 -O /dev/null "$target" && exit 0
    else  # bash alone: HTTP/1.0 over /dev/tcp
        rest=${target#http://}; hostport=${rest%%/*}; path=/${rest#*/}
        host=${hostport%:*}; port=80; [ "$hostport" = "$host" ] || port=${hostport##*:}
        if exec 3<>"/dev/tcp/$host/$port"; then
            printf 'GET %s HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' "$path" "$hostport" >&3
            read -r status <&3; exec 3<&-
            case "$status" in *" 200 "*) exit 0;; esac
        fi
    fi
    sleep "$try"
done
exit 1
"""

REPORT_SERVICE = f"""# Installed by bootpack: see /{REPORT_SCRIPT}
[Unit]
Description=Report to the boot appliance that this system is up
ConditionKernelCommandLine=bootpack.report
Wants=network-online.target
After=network-online.target multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/bash /{REPORT_SCRIPT}

[Install]
WantedBy=multi-user.target
"""

LEFTOVERS = (".dockerenv", ".dockerinit", "etc/hostname", "var/lib/dbus/machine-id",
             "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/cache/debconf/*-old",
             "var/lib/apt/lists/*", "var/lib/dpkg/*-old", "etc/*-",
             "var/lib/systemd/random-seed", "var/lib/systemd/catalog/database")
EMPTY_DIRS = ("proc", "sys", "dev", "run", "tmp", "boot", "var/tmp")


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _empty_dir(path: Path, mode: int) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    if path.is_dir():
        for child in path.iterdir():
            _remove(child)
    else:
        path.mkdir(parents=True)
    os.chown(path, 0, 0)
    path.chmod(mode)


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)
    os.chown(path, 0, 0)


def clean_tree(root: Path) -> None:
    """Remove container and build leftovers from a root tree (in place)."""
    for pattern in LEFTOVERS:
        for path in sorted(root.glob(pattern)):
            _remove(path)
    log = root / "var/log"
    if log.is_dir():  # apt/dpkg logs hold build times; keep the folders, drop the files
        for path in walk(log):
            if not path.is_dir():
                path.unlink()
    for rel in EMPTY_DIRS:
        sticky = rel in ("tmp", "var/tmp")
        _empty_dir(root / rel, 0o1777 if sticky else 0o755)
    _write(root, "etc/hosts", HOSTS)
    _write(root, "etc/resolv.conf", "")
    # Empty machine-id: systemd makes a fresh one at each boot, so clients never share one.
    _write(root, "etc/machine-id", "", 0o444)


def add_readonly_support(root: Path) -> None:
    """Install the unit that makes / boot clean when it is a read-only (NFS) mount."""
    _write(root, VOLATILE_SCRIPT, VOLATILE_SH, 0o755)
    _write(root, VOLATILE_UNIT, VOLATILE_SERVICE)
    wants = root / VOLATILE_WANTS
    wants.parent.mkdir(parents=True, exist_ok=True)
    if wants.is_symlink() or wants.exists():
        wants.unlink()
    wants.symlink_to(f"/{VOLATILE_UNIT}")


def add_boot_report(root: Path) -> None:
    """Install the unit that reports `up` to the appliance (only when the kernel command line
    carries bootpack.report=URL, which entries[].report_up and hosts[].report_up control)."""
    _write(root, REPORT_SCRIPT, REPORT_SH, 0o755)
    _write(root, REPORT_UNIT, REPORT_SERVICE)
    wants = root / REPORT_WANTS
    wants.parent.mkdir(parents=True, exist_ok=True)
    if wants.is_symlink() or wants.exists():
        wants.unlink()
    wants.symlink_to(f"/{REPORT_UNIT}")


def resolve_in(root: Path, path: str, hops: int = 40) -> Path | None:
    """Resolve `path` as the booted system would see it (symlinks stay inside root)."""
    parts = [p for p in path.split("/") if p and p != "."]
    current: list[str] = []
    while parts:
        part = parts.pop(0)
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = root.joinpath(*current, part)
        if candidate.is_symlink():
            hops -= 1
            if hops < 0:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        if not candidate.exists():
            return None
        current.append(part)
    return root.joinpath(*current)


def find_init(root: Path) -> str | None:
    """Absolute path (inside the tree) of the init the kernel or initrd will start."""
    for candidate in ("/sbin/init", "/lib/systemd/systemd"):
        found = resolve_in(root, candidate)
        if found is not None and found.is_file():
            return candidate
    return None


def tree_size(root: Path) -> int:
    total = 0
    for path in walk(root):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
    return total
