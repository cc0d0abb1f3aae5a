"""End to end, as a user sees it: a QEMU VM PXE-boots from the appliance container.

The spec's network is 10.77.S.0/24 with the server at .2; the appliance runs on another one,
10.78.S.0/25 at .10, so DHCP (pool moved to the same offsets), pxelinux configs, the live URL
and the NFS root all have to follow the runtime address. The VM's NIC is a tap on the test's
own Docker bridge: its DHCP, TFTP, HTTP and NFS traffic never leaves that bridge.

The kernel is Debian's; the initrd is tests.netmarker's (busybox): for a `live` entry it fetches
the squashfs over HTTP, for an `nfs` entry it mounts the NFS root and switch_roots into it, whose
own /init prints the marker. Real dracut images (issue 3) can replace it without changing the
appliance.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import docker
import pytest

from tests.support.appliance_env import (
    ARM_MAC,
    KNOWN_MAC,
    LIVE_MAC,
    NFS_MAC,
    SLOT,
    BootNet,
    appliance_image,
    docker_client_or_skip,
    isolated_network,
    start_appliance,
    tap_device,
    vm_network,
    wait_healthy,
)
from tests.support.marker import MARKER
from tests.support.netmarker import LIVE_MARK, NFS_ROOT_MARK
from tests.support.vm import (
    HTTP_BOOT_ONLY,
    Firmware,
    arm64_available,
    boot_vm,
    ovmf_available,
    qemu_available,
)

pytestmark = [pytest.mark.docker, pytest.mark.boot]
TAP = f"bptap-a{SLOT}"


@pytest.fixture(scope="module")
def net() -> Iterator[BootNet]:
    with vm_network(IPv4Network(f"10.78.{SLOT}.0/25"), "b") as net:
        yield net


@pytest.fixture(scope="module")
def tap(net: BootNet) -> Iterator[str]:
    with tap_device(net, TAP) as tap:
        yield tap


@pytest.fixture(scope="module")
def appliance(net: BootNet, tap: str) -> Iterator[str]:
    client = docker.from_env()
    address = net.ip(10)
    container = start_appliance(client, net, address,
                                ["--interface", "eth0", "--address", f"{address}/25"],
                                f"bp-appl-{SLOT}-boot")
    try:
        seconds = wait_healthy(container)
        print(f"\nappliance at {address} healthy {seconds:.1f} s after start")
        logs = container.logs().decode()
        pool = f"{net.ip(100)}-{net.ip(120)}"
        assert f"DHCP pool {pool}" in logs
        assert "host known: fixed address" in logs and "dropped from DHCP" in logs
        yield address
    finally:
        with contextlib.suppress(docker.errors.APIError):
            print(container.logs().decode()[-3000:])
        container.remove(force=True, v=True)


def _boot(tmp_path: Path, tap: str, mac: str, until: str, label: str,  # type: ignore[no-untyped-def]
          firmware: Firmware = "bios"):
    boot = boot_vm(tmp_path / "serial.log", mac, until, tap=tap, timeout=240, firmware=firmware)
    print(f"\n{label}: {'marker' if boot.found else 'NO marker'} after {boot.seconds:.1f} s")
    assert boot.found, boot.log[-4000:]
    return boot


def _through_ipxe(log: str) -> bool:
    """Whether the kernel was loaded by iPXE's script (which names the initrd on the command
    line, initrd=NAME), not by pxelinux."""
    cmdline = next(line for line in log.splitlines() if line.startswith(f"{MARKER} cmdline:"))
    return "initrd=initrd.img" in cmdline.split()


def test_ramdisk_entry_boots_through_dhcp_and_tftp(tmp_path: Path, tap: str, appliance: str,
                                                   net: BootNet) -> None:
    boot = _boot(tmp_path, tap, "52:54:00:a7:01:01", f"{MARKER} done", "ramdisk (menu default)")
    assert "bootpack.entry=marker" in boot.log
    assert _through_ipxe(boot.log)  # QEMU's PXE ROM is iPXE: it ran the bundle's iPXE menu


def test_live_entry_fetches_its_squashfs_over_http(tmp_path: Path, tap: str, appliance: str,
                                                   net: BootNet) -> None:
    boot = _boot(tmp_path, tap, LIVE_MAC, f"{MARKER} done", "live (host file)")
    assert f"root=live:http://{appliance}/images/marker/squashfs.img" in boot.log
    digest = hashlib.sha256(bytes(range(256)) * 4096).hexdigest()
    assert f"{LIVE_MARK} fetched 1048576 bytes sha256 {digest}" in boot.log, boot.log[-3000:]
    lease = net.ip(100)
    assert f"inet 10.78.{SLOT}." in boot.log and lease.rsplit(".", 1)[0] in boot.log


def test_nfs_entry_boots_its_nfs_root(tmp_path: Path, tap: str, appliance: str) -> None:
    boot = _boot(tmp_path, tap, NFS_MAC, f"{MARKER} done", "nfs (host file)")
    assert f"root=nfs4:{appliance}:/srv/bootpack/roots/marker" in boot.log
    assert f"{NFS_ROOT_MARK}: /init running from {appliance}:/srv/bootpack/roots/marker" in boot.log, \
        boot.log[-3000:]


def test_uefi_vm_boots_its_entry_through_shim_and_grub(tmp_path: Path, tap: str, appliance: str) -> None:
    """Next to the BIOS VMs above, on the same network and appliance: OVMF's own PXE sends option
    93 = 7, dhcpd hands it bootx64.efi (shim), shim loads GRUB over TFTP, GRUB's grub.cfg sends
    the known MAC to its host file, which boots the host's entry with the host's cmdline, kernel
    and initrd over HTTP."""
    if not ovmf_available():
        pytest.fail("OVMF is needed (scripts/install --test)")
    boot = _boot(tmp_path, tap, KNOWN_MAC, f"{MARKER} done", "UEFI (known host, shim -> GRUB)",
                 firmware="uefi")
    cmdline = next(line for line in boot.log.splitlines() if line.startswith(f"{MARKER} cmdline:"))
    # Secure Boot off: GRUB fetched the kernel from the appliance's nginx, not over TFTP
    words = cmdline.split()[2:]
    report = f"bootpack.report=http://{appliance}/bootpack/up/marker"  # report_up, on by default
    assert words == [f"BOOT_IMAGE=(http,{appliance})/images/marker/vmlinuz",
                     "console=ttyS0", "bootpack.entry=marker", "bootpack.host=known", report], cmdline


def test_uefi_http_boot_boots_the_menu_default_through_ipxe(tmp_path: Path, tap: str,
                                                           appliance: str) -> None:
    """UEFI HTTP boot (PXE switched off in OVMF): the firmware sends option 93 = 16 and vendor
    class HTTPClient, dhcpd answers with option 60 HTTPClient and the URL of snponly.efi, iPXE
    DHCPs again (93 = 7, user class iPXE) and gets its script; an unknown MAC gets the menu,
    whose default boots after its 1 s timeout."""
    if not ovmf_available():
        pytest.fail("OVMF is needed (scripts/install --test)")
    boot = boot_vm(tmp_path / "serial.log", "52:54:00:a7:01:16", f"{MARKER} done", tap=tap,
                   timeout=300, firmware="uefi", extra_args=HTTP_BOOT_ONLY)
    print(f"\nUEFI HTTP boot (unknown host, iPXE menu): {'marker' if boot.found else 'NO marker'} "
          f"after {boot.seconds:.1f} s")
    assert boot.found, boot.log[-4000:]
    assert "PXE" not in boot.log.split("HTTP Boot", 1)[0]  # no PXE attempt before HTTP boot
    assert f"URI: http://{appliance}/snponly.efi" in boot.log, boot.log[:3000]
    assert "bootpack.entry=marker" in boot.log and "bootpack.host" not in boot.log


def _arm64_words(boot_log: str) -> list[str]:
    line = next(line for line in boot_log.splitlines() if line.startswith(f"{MARKER} cmdline:"))
    assert f"{MARKER} arch: aarch64" in boot_log
    return [w for w in line.split()[2:] if not w.startswith("bootpack.report=")]


def test_arm64_vm_boots_its_host_entry_from_the_same_appliance(tmp_path: Path, tap: str,
                                                              appliance: str) -> None:
    """An arm64 machine on the same network and appliance as the x86 VMs above: AAVMF's own PXE
    sends option 93 = 11, dhcpd hands it bootaa64.efi (Debian's signed arm64 shim), shim loads
    arm64 GRUB, the shared grub.cfg sends the known MAC to its host file: Debian's arm64 kernel
    over HTTP (GRUB's arm64 http.mod) with the arm64 marker."""
    if not arm64_available():
        pytest.fail("qemu-system-arm and qemu-efi-aarch64 are needed (scripts/install --test)")
    boot = _boot(tmp_path, tap, ARM_MAC, f"{MARKER} done", "arm64 UEFI (known host)",
                 firmware="arm64")
    assert _arm64_words(boot.log) == [f"BOOT_IMAGE=(http,{appliance})/images/armmarker/vmlinuz",
                                      "console=ttyAMA0", "bootpack.entry=arm",
                                      "bootpack.host=armhost"]


def test_unknown_arm64_vm_boots_the_arm64_default(tmp_path: Path, tap: str, appliance: str) -> None:
    """menu.default (`marker`) is an x86-64 entry: an unknown arm64 machine boots the first arm64
    entry from the arm64 menu instead."""
    if not arm64_available():
        pytest.fail("qemu-system-arm and qemu-efi-aarch64 are needed (scripts/install --test)")
    mac = "52:54:00:a7:01:11"
    boot = _boot(tmp_path, tap, mac, f"{MARKER} done", "arm64 UEFI (unknown, menu)",
                 firmware="arm64")
    assert _arm64_words(boot.log)[1:] == ["console=ttyAMA0", "bootpack.entry=arm"]
    # and `bootpack status` shows the entry it booted, by the same rule, not menu.default
    code, out = docker.from_env().containers.get(f"bp-appl-{SLOT}-boot").exec_run(
        ["bootpack", "status", "--json"])
    assert code == 0, out
    host = next(h for h in json.loads(out)["hosts"] if h["mac"] == mac)
    assert (host["entry"], host["boots"][-1]["architecture"]) == ("arm", "arm64"), host


PROXY_TAP = f"bptap-a{SLOT}x"


@pytest.fixture(scope="module")
def proxy_lan() -> Iterator[tuple[BootNet, str, str]]:
    """A LAN whose addresses come from someone else's DHCP server (a plain dnsmasq that knows
    nothing about booting) and an appliance in proxy mode next to it. Yields (net, appliance
    address, tap)."""
    if not qemu_available() or not ovmf_available():
        pytest.fail("qemu-system-x86_64 and OVMF are needed (scripts/install --test)")
    client = docker_client_or_skip()
    tag, _seconds, _size = appliance_image()
    with isolated_network(client, IPv4Network(f"10.79.{SLOT}.0/24"), "x") as net:
        lan_dhcp = client.containers.run(
            tag, name=f"bp-appl-{SLOT}-landhcp", detach=True,
            entrypoint=["dnsmasq", "--keep-in-foreground", "--log-facility=-", "--log-dhcp",
                        "--port=0", "--user=root", "--interface=eth0", "--bind-interfaces",
                        f"--dhcp-range={net.ip(100)},{net.ip(120)},255.255.255.0,600",
                        "--dhcp-leasefile=/tmp/leases"],
            network=net.network.name, cap_add=["NET_ADMIN", "NET_RAW"])
        address = net.ip(10)
        container = start_appliance(client, net, address,
                                    ["--interface", "eth0", "--address", f"{address}/24",
                                     "--dhcp", "proxy"], f"bp-appl-{SLOT}-proxyboot")
        try:
            with tap_device(net, PROXY_TAP) as tap:
                wait_healthy(container)
                yield net, address, tap
        finally:
            with contextlib.suppress(docker.errors.APIError):
                print("--- LAN dhcp\n" + lan_dhcp.logs().decode()[-2000:])
                print("--- appliance\n" + container.logs().decode()[-3000:])
            for c in (lan_dhcp, container):
                with contextlib.suppress(docker.errors.APIError):
                    c.remove(force=True, v=True)


def test_proxy_mode_boots_bios(tmp_path: Path, proxy_lan: tuple[BootNet, str, str]) -> None:
    """The LAN's DHCP server gives the address, the appliance's proxy-DHCP the loader."""
    _net, _address, tap = proxy_lan
    boot = _boot(tmp_path, tap, KNOWN_MAC, f"{MARKER} done", "proxy mode, BIOS")
    assert "bootpack.host=known" in boot.log
    assert _through_ipxe(boot.log)  # ipxe/boot.ipxe over TFTP from the proxy's pxe-service


def test_proxy_mode_uefi_boots_its_entry_through_ipxe(
        tmp_path: Path, proxy_lan: tuple[BootNet, str, str]) -> None:
    """UEFI behind a proxy DHCP: the bundle carries ipxe, so OVMF's own PXE (option 93 = 7, no
    user class) gets snponly.efi from the proxy offer; iPXE DHCPs again with user class "iPXE"
    and gets the script URL (not itself: no loop), then boots the known host's entry with kernel
    and initrd over HTTP. (Debian's GRUB would stop here: it takes its TFTP server from the LAN
    server's ACK.)"""
    _net, address, tap = proxy_lan
    boot = _boot(tmp_path, tap, KNOWN_MAC, f"{MARKER} done", "proxy mode, UEFI (iPXE)",
                 firmware="uefi")
    assert "NBP filename is snponly.efi" in boot.log
    cmdline = next(line for line in boot.log.splitlines() if line.startswith(f"{MARKER} cmdline:"))
    # iPXE passes the kernel image's name first, as GRUB passes BOOT_IMAGE=
    assert cmdline.split()[2:] == ["vmlinuz", "initrd=initrd.img", "console=ttyS0",
                                   "bootpack.entry=marker",
                                   "bootpack.host=known",
                                   f"bootpack.report=http://{address}/bootpack/up/marker"], cmdline
    assert boot.log.count("NBP filename") == 1  # iPXE was not handed itself again
