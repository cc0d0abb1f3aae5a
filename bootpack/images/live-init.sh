#!/bin/sh
# bootpack's live init: /init of the initrd of a `root = "live"` entry of an image bootpack
# builds. It runs busybox alone (no udev, no systemd): loads the drivers the machine's devices
# ask for, takes one DHCP lease, fetches the squashfs named by root=live:URL into RAM, mounts it
# under a RAM overlay and hands over to the image's init. Kernel to switch_root took ~4 s under
# TCG where dracut's systemd initrd with livenet took ~30 s (docs/speed.md, round 5).
#
# Kernel command line: root=live:URL (required), BOOTIF=01-MAC (the loader's NIC, tried first),
# init=PATH (default /sbin/init), bootpack.debug (trace this script on the console).
#
# The same file, not as PID 1, is udhcpc's script (udhcpc -s /init: $1 is bound, deconfig, ...)
# and, copied to /run/bootpack/init, the booted system's udev rule's (network-up, below).
if [ "$$" != 1 ]; then
    case "$1" in
    bound)
        ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
        if [ -n "${router:-}" ]; then
            ip route replace default via "${router%% *}" dev "$interface"
        fi
        for server in ${dns:-}; do echo "nameserver $server"; done > /etc/resolv.conf
        ;;
    network-up)  # in the booted system: the initrd's NIC, renamed by udev, up again
        bb=/run/bootpack/busybox
        read -r mac router < /run/bootpack/network || exit 0
        for dev in /sys/class/net/*; do
            [ "$("$bb" cat "$dev/address")" = "$mac" ] || continue
            "$bb" ip link set dev "${dev##*/}" up
            if [ -n "$router" ]; then "$bb" ip route replace default via "$router" dev "${dev##*/}"; fi
        done
        ;;
    esac
    exit 0
fi

export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1  # the cpio has no /dev/console: the kernel opened none

say() { echo "bootpack: $*" > /dev/kmsg; }  # kernel log: timestamped, on every console
fail() {
    say "$*"
    say "starting a shell on the console; leaving it reboots the machine"
    sh
    reboot -f
}

url= bootif= init=/sbin/init
set -f  # the command line's words are not file patterns
for word in $(cat /proc/cmdline); do
    case "$word" in
    root=live:*) url=${word#root=live:} ;;
    BOOTIF=*) bootif=$(echo "${word#BOOTIF=}" | sed 's/^01[-:]//; s/-/:/g' | tr A-F a-f) ;;
    init=*) init=${word#init=} ;;
    bootpack.debug) set -x ;;
    esac
done
set +f
[ -n "$url" ] || fail "no root=live:URL on the kernel command line"
say "live root $url"

# Drivers for the devices present, by their modalias, round after round while a round loads
# more: a driver brings new devices (virtio_pci -> the virtio bus -> virtio_net; a PCI host).
count=-1
while [ "$count" != "$(wc -l < /proc/modules)" ]; do
    count=$(wc -l < /proc/modules)
    aliases=$(sort -u /sys/bus/*/devices/*/modalias 2>/dev/null)
    set -f  # an alias may hold '*'
    # shellcheck disable=SC2086  # one word per alias
    modprobe -q -b -a $aliases
    set +f
done
# What the live root mounts with (built into some kernels: then modprobe has nothing to do, and
# a kernel without one fails below, at the mount that needs it).
modules=$(cat /etc/bootpack/modules)
# shellcheck disable=SC2086
modprobe -a $modules || say "could not load every one of: $modules"

# One DHCP lease on the first NIC with a link that gets one: the loader's NIC first. Links come
# up a few seconds after the driver resets them (and switch ports may hold them back), so keep
# trying for a minute.
ip link set lo up
nics=
for dev in /sys/class/net/*; do
    name=${dev##*/}
    [ "$name" = lo ] && continue
    ip link set "$name" up
    if [ "$(cat "$dev/address")" = "$bootif" ]; then nics="$name $nics"; else nics="$nics $name"; fi
done
[ -n "$nics" ] || fail "no network interface: the kernel has no driver for this machine's NIC (add it to images.NAME.drivers)"
seconds() { cut -d. -f1 /proc/uptime; }
up= deadline=$(($(seconds) + 60))
while [ -z "$up" ]; do
    for name in $nics; do
        [ "$(cat "/sys/class/net/$name/carrier" 2>/dev/null)" = 1 ] || continue
        # -C: no client id, the server knows the client by its MAC as it did the firmware
        if udhcpc -i "$name" -s /init -C -f -q -n -t 3 -T 1 -A 1 >/dev/null 2>&1; then
            up=$name
            break
        fi
    done
    if [ -z "$up" ]; then
        [ "$(seconds)" -ge "$deadline" ] && fail "no DHCP lease on$nics within 60 s"
        sleep 1
    fi
done
say "network up on $up: $(ip -4 -o addr show dev "$up" | awk '{print $4}')"

# The squashfs in a RAM file system, the overlay's writes in another (a full root must not fill
# /run, which the booted system keeps).
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/bootpack/squashfs /run/bootpack/overlay
tries=1
until wget -q -O /run/bootpack/root.squashfs "$url"; do
    [ "$tries" -ge 5 ] && fail "cannot fetch $url (5 tries)"
    say "fetching $url failed; try $((tries + 1)) of 5 in $tries s"
    sleep "$tries"
    tries=$((tries + 1))
done
say "fetched $(stat -c %s /run/bootpack/root.squashfs) bytes"
mount -t squashfs -o ro,loop /run/bootpack/root.squashfs /run/bootpack/squashfs \
    || fail "$url is not a squashfs this kernel can mount"
mount -t tmpfs -o mode=0755 tmpfs /run/bootpack/overlay
mkdir -p /run/bootpack/overlay/upper /run/bootpack/overlay/work /sysroot
mount -t overlay overlay -o "lowerdir=/run/bootpack/squashfs,upperdir=/run/bootpack/overlay/upper,workdir=/run/bootpack/overlay/work" /sysroot \
    || fail "cannot mount the overlay on the squashfs"
[ -e "/sysroot$init" ] || [ -L "/sysroot$init" ] || fail "the root has no $init"

# The network goes to the booted system, whose udev names the NIC (ens2, not the kernel's eth0,
# so the image's own network config matches it). Linux 6.1 renames no interface that is up: the
# link goes down here (the address stays, the routes go), and a udev rule in /run brings it up
# again under its final name with the default route (this file's network-up, run by a copy of
# this busybox: the image may have no `ip`). The rule and the state file hold only a MAC and an
# IPv4 address.
mac=$(cat "/sys/class/net/$up/address")
router=$(ip -4 route show default | awk '{print $3; exit}')
case "$router" in *[!0-9.]*) router= ;; esac
echo "$mac $router" > /run/bootpack/network
cp /bin/busybox /run/bootpack/busybox
cp /init /run/bootpack/init
mkdir -p /run/udev/rules.d
echo "SUBSYSTEM==\"net\", ACTION==\"add\", ATTR{address}==\"$mac\", RUN+=\"/run/bootpack/busybox sh /run/bootpack/init network-up\"" \
    > /run/udev/rules.d/99-bootpack-live-network.rules
ip link set dev "$up" down

# The booted system keeps /run (the squashfs file and its mounts, the network's rule) and /dev.
say "switching to $init"
mount --move /run /sysroot/run
mount --move /dev /sysroot/dev
umount /sys /proc
exec switch_root /sysroot "$init" "$@"
