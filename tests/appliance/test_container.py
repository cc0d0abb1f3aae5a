"""The boot appliance in a container, on an isolated Docker network the test creates.

The spec says the server is .2 on 10.77.S.0/24; the appliance runs at .10 of the same network,
so everything that carries the server address must follow it. A proxy-mode appliance runs on a
second network, 10.78.S.128/25 (another subnet than the spec's), with no address pool.
Clients: curl and nfs-ls on the host talk to the container's address on the test bridge; DHCP is
checked from a client container on the same network. Nothing uses host networking.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import docker
import pytest
from docker.models.containers import Container

from bootpack.appliance.health import tftp_read
from tests.support.appliance_env import (
    KNOWN_MAC,
    OWNED,
    SLOT,
    BootNet,
    appliance_image,
    dhcp_offers,
    docker_client_or_skip,
    isolated_network,
    spec_subnet,
    start_appliance,
    wait_healthy,
)
from tests.support.marker import debian_kernel

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return docker_client_or_skip()


@pytest.fixture(scope="module")
def image(client: docker.DockerClient) -> str:
    tag, seconds, size = appliance_image()
    print(f"\nappliance image {tag}: built in {seconds:.1f} s, {size / 1e6:.0f} MB")
    return tag


@pytest.fixture(scope="module")
def net(client: docker.DockerClient, image: str) -> Iterator[BootNet]:
    with isolated_network(client, spec_subnet(), "s") as net:
        yield net


@pytest.fixture(scope="module")
def appliance(client: docker.DockerClient, net: BootNet) -> Iterator[Container]:
    container = start_appliance(client, net, net.ip(10), ["--interface", "eth0"],
                                f"bp-appl-{SLOT}-server", env={"BOOTPACK_RESTART_DELAY": "4"})
    seconds = wait_healthy(container)
    print(f"\nappliance healthy {seconds:.1f} s after start")
    yield container
    container.remove(force=True, v=True)


@pytest.fixture
def address(net: BootNet, appliance: Container) -> str:
    return net.ip(10)


def test_tftp_reads_pxelinux_with_tsize_and_blksize(address: str) -> None:
    result = subprocess.run(
        ["curl", "-sS", "-v", "--max-time", "20", "--tftp-blksize", "1024", "-o", "-",
         f"tftp://{address}/pxelinux.0"], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    with open("/usr/lib/PXELINUX/lpxelinux.0", "rb") as f:  # served as pxelinux.0
        assert result.stdout == f.read()
    log = result.stderr.decode()
    assert re.search(r"got option=\(tsize\) value=\(\d+\)", log), log
    assert "got option=(blksize) value=(1024)" in log, log
    data, options = tftp_read(address, "pxelinux.0", blksize=1400)
    assert options == {"tsize": len(data), "blksize": 1400}


def test_tftp_serves_runtime_pxelinux_config_for_this_address(address: str) -> None:
    data, _ = tftp_read(address, "pxelinux.cfg/default")
    text = data.decode()
    assert f"root=nfs4:{address}:/srv/bootpack/roots/marker" in text
    assert f"root=live:http://{address}/images/marker/squashfs.img" in text
    assert ".2:" not in text and "http://10.77" not in text.replace(f"http://{address}", "")


@pytest.mark.parametrize("path", ["../bundle.json", "../../etc/passwd", "/etc/passwd",
                                  "images/../../spec.json", "../etc/dhcpd.conf"])
def test_tftp_refuses_paths_outside_the_tree(address: str, path: str) -> None:
    with pytest.raises(OSError):
        tftp_read(address, path, timeout=2, retries=1)


def test_tftp_is_read_only(address: str) -> None:
    request = b"\x00\x02evil.txt\x00octet\x00"  # WRQ
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(request, (address, 69))
        reply, _ = sock.recvfrom(1024)
    assert reply[:2] == b"\x00\x05", reply  # ERROR


def test_http_get_and_range(address: str) -> None:
    kernel = debian_kernel().read_bytes()
    url = f"http://{address}/images/marker/vmlinuz"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert hashlib.sha256(response.read()).digest() == hashlib.sha256(kernel).digest()
    request = urllib.request.Request(url, headers={"Range": "bytes=100-199"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 100-199/{len(kernel)}"
        assert response.read() == kernel[100:200]
    squashfs = f"http://{address}/images/marker/squashfs.img"
    with urllib.request.urlopen(squashfs, timeout=10) as response:
        assert response.read() == bytes(range(256)) * 4096


def _raw_http(address: str, path: str) -> tuple[int, bytes]:
    with socket.create_connection((address, 80), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.parametrize("path", ["/../bundle.json", "/images/../../spec.json", "/%2e%2e/bundle.json",
                                  "/bundle.json", "/etc/dhcpd.conf", "/../../etc/passwd"])
def test_http_refuses_paths_outside_the_tree(address: str, path: str) -> None:
    status, data = _raw_http(address, path)
    assert status in (400, 403, 404), data[:300]


@pytest.mark.parametrize("path", ["/", "/images/", "/images/marker/", "/pxelinux.cfg/"])
def test_http_lists_no_directory(address: str, path: str) -> None:
    status, data = _raw_http(address, path)
    assert status in (403, 404), data[:300]
    assert b"Index of" not in data


def test_http_serves_runtime_pxelinux_config(address: str) -> None:
    with urllib.request.urlopen(f"http://{address}/pxelinux.cfg/default", timeout=10) as response:
        assert f"http://{address}/images/marker/squashfs.img" in response.read().decode()


@pytest.mark.parametrize("version", [4, 3])
def test_nfs_lists_the_root_tree(address: str, version: int) -> None:
    url = f"nfs://{address}/srv/bootpack/roots/marker?version={version}"
    result = subprocess.run(["nfs-ls", url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "BOOTPACK-NFS-ROOT" in result.stdout and "init" in result.stdout


def nfs_owners(address: str, path: str, version: int) -> dict[str, tuple[str, str]]:
    """name -> (uid, gid) as nfs-ls (libnfs) lists a directory."""
    result = subprocess.run(["nfs-ls", f"nfs://{address}{path}?version={version}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {line.split()[-1]: (line.split()[2], line.split()[3])
            for line in result.stdout.splitlines() if line.strip()}


def test_nfs_owners_are_the_trees_own_numbers_over_v3_and_v4(appliance: Container,
                                                             address: str) -> None:
    # OWNED is uid 102, which has a name in the appliance (_rpc) that means another uid in a
    # Debian image (statd), and gid 4343, which has no name there. Over NFSv4 both must arrive
    # as the numbers on disk, as over NFSv3: Ganesha sends numeric owners, so no client maps
    # names (or waits on an id-mapping upcall to do it).
    name, uid, gid = OWNED
    assert appliance.exec_run(["getent", "passwd", str(uid)]).exit_code == 0  # a named uid
    for version in (3, 4):
        owners = nfs_owners(address, "/srv/bootpack/roots/marker", version)
        assert owners[name] == (str(uid), str(gid)), (version, owners)
        assert owners["BOOTPACK-NFS-ROOT"] == ("0", "0"), (version, owners)


def test_nfs_exports_only_the_root_trees(address: str) -> None:
    result = subprocess.run(["nfs-ls", f"nfs://{address}/srv/bootpack?version=4"],
                            capture_output=True, text=True, timeout=60)
    assert "bundle.json" not in result.stdout and "tftpboot" not in result.stdout


def test_nfs_shared_export_is_read_only_and_host_root_writable_only_by_its_host(
        appliance: Container, net: BootNet, address: str) -> None:
    config = appliance.exec_run(["cat", "/run/bootpack/ganesha.conf"]).output.decode()
    assert f"Clients = {spec_subnet()}; Access_Type = RO;" in config
    assert config.count("Access_Type = RW") == 1
    assert f"Clients = {net.ip(22)}/32; Access_Type = RW;" in config
    # The copy exists, and this host (the bridge, .1) is not the writable host: refused.
    listing = appliance.exec_run(["ls", "/var/lib/bootpack/hosts/nfshost"]).output.decode()
    assert "BOOTPACK-NFS-ROOT" in listing
    result = subprocess.run(["nfs-ls", f"nfs://{address}/var/lib/bootpack/hosts/nfshost?version=4"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "BOOTPACK-NFS-ROOT" not in result.stdout
    host_cfg, _ = tftp_read(address, "pxelinux.cfg/01-52-54-00-a7-00-03")
    assert f"root=nfs4:{address}:/var/lib/bootpack/hosts/nfshost:vers=4,tcp" in host_cfg.decode()
    assert " rw " in host_cfg.decode()


def test_dhcp_offer_carries_next_server_and_filename(client: docker.DockerClient, net: BootNet,
                                                     address: str) -> None:
    offers = dhcp_offers(client, net, "52:54:00:a7:0f:0f")
    assert len(offers) == 1, offers
    offer = offers[0]
    assert offer["siaddr"] == address and offer["server"] == address
    assert offer["file"] == "pxelinux.0"
    pool = (net.subnet.network_address + 100, net.subnet.network_address + 120)
    assert pool[0] <= IPv4Address(str(offer["yiaddr"])) <= pool[1]


@pytest.mark.parametrize(("arch", "expected"), [(0, "pxelinux.0"), (7, "bootx64.efi"),
                                               (9, "bootx64.efi"), (11, "bootaa64.efi")])
def test_dhcp_offer_picks_the_loader_by_architecture(client: docker.DockerClient, net: BootNet,
                                                     address: str, arch: int, expected: str) -> None:
    offers = dhcp_offers(client, net, f"52:54:00:a7:0f:{arch + 16:02x}", pxe=True, arch=arch)
    assert len(offers) == 1, offers
    assert offers[0]["file"] == expected and offers[0]["siaddr"] == address


def test_dhcp_offer_for_uefi_http_boot_is_a_url(client: docker.DockerClient, net: BootNet,
                                                address: str) -> None:
    offers = dhcp_offers(client, net, "52:54:00:a7:0f:30", pxe=True, arch=16)
    assert len(offers) == 1, offers
    assert offers[0]["file"] == f"http://{address}/snponly.efi"  # the bundle carries ipxe
    assert offers[0]["vendor_class"] == "HTTPClient"  # firmware ignores an HTTP offer without it


@pytest.mark.parametrize("arch", [7, 0])
def test_ipxe_asking_again_gets_its_script_not_itself(client: docker.DockerClient, net: BootNet,
                                                      address: str, arch: int) -> None:
    """Trap T3, against the real dhcpd: a UEFI client with user class iPXE gets the script URL
    (handed snponly.efi again, Debian's iPXE would loop); so does a BIOS iPXE ROM, which then
    fetches kernel and initrd itself (loaders.bios_ipxe)."""
    offers = dhcp_offers(client, net, f"52:54:00:a7:0f:{arch + 64:02x}", pxe=True, arch=arch,
                         user_class="iPXE")
    assert len(offers) == 1, offers
    assert offers[0]["file"] == f"http://{address}/ipxe/boot.ipxe", offers


def test_http_serves_the_uefi_loaders_and_runtime_grub_config(address: str) -> None:
    shim = urllib.request.urlopen(f"http://{address}/bootx64.efi", timeout=10).read()
    assert shim[:2] == b"MZ" and len(shim) > 500_000
    data, _ = tftp_read(address, "bootaa64.efi")  # the arm64 shim, over TFTP as AAVMF reads it
    pe = int.from_bytes(data[0x3C:0x40], "little")
    assert data[pe:pe + 6] == b"PE\0\0\x64\xaa"  # IMAGE_FILE_MACHINE_ARM64
    grub = urllib.request.urlopen(f"http://{address}/grub/grub.cfg", timeout=10).read().decode()
    assert f"configfile '/grub/hosts/{KNOWN_MAC}.cfg'" in grub
    ipxe = urllib.request.urlopen(f"http://{address}/snponly.efi", timeout=10).read()
    assert ipxe[:2] == b"MZ" and len(ipxe) > 100_000
    script = urllib.request.urlopen(f"http://{address}/ipxe/boot.ipxe", timeout=10).read().decode()
    assert script.startswith("#!ipxe\n") and f"chain http://{address}/ipxe/default.ipxe" in script


def test_dhcp_known_mac_gets_its_fixed_address(client: docker.DockerClient, net: BootNet,
                                               address: str) -> None:
    offers = dhcp_offers(client, net, KNOWN_MAC)
    assert [o["yiaddr"] for o in offers] == [net.ip(20)], offers
    assert offers[0]["siaddr"] == address and offers[0]["file"] == "pxelinux.0"


def test_serve_refuses_a_second_dhcp_server(client: docker.DockerClient, net: BootNet,
                                            appliance: Container) -> None:
    other = start_appliance(client, net, net.ip(11), ["--interface", "eth0"], f"bp-appl-{SLOT}-second")
    try:
        result = other.wait(timeout=60)
        logs = other.logs().decode()
        assert result["StatusCode"] == 2, logs
        assert f"another DHCP server answers on eth0: {net.ip(10)}" in logs
    finally:
        other.remove(force=True, v=True)


def _state(container: Container) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        container.exec_run(["cat", "/run/bootpack/state.json"]).output)
    return data


def test_health_fails_when_a_daemon_dies_and_recovers_after_restart(appliance: Container) -> None:
    services = _state(appliance)["daemons"]
    assert isinstance(services, dict)
    pid = services["tftpd"]["pid"]
    killed = time.monotonic()
    assert appliance.exec_run(["sh", "-c", f"kill -9 {pid}"]).exit_code == 0
    time.sleep(0.5)
    code, out = appliance.exec_run(["bootpack", "health"])
    assert code == 1, out.decode()
    assert "FAIL service tftpd" in out.decode()
    wait_healthy(appliance, timeout=60)
    seconds = time.monotonic() - killed
    services = _state(appliance)["daemons"]
    assert isinstance(services, dict)
    assert services["tftpd"]["restarts"] == 1 and services["tftpd"]["pid"] != pid
    print(f"\nhealthy again {seconds:.1f} s after the kill")
    logs = appliance.logs().decode()
    assert "tftpd exited with status -9" in logs


def test_docker_healthcheck_reports_healthy(appliance: Container) -> None:
    deadline = time.monotonic() + 90
    status = ""
    while time.monotonic() < deadline:
        appliance.reload()
        status = appliance.attrs["State"].get("Health", {}).get("Status", "")
        if status == "healthy":
            return
        time.sleep(2)
    raise AssertionError(f"docker health status {status!r}")


def test_logs_are_prefixed_with_the_service_name(appliance: Container) -> None:
    logs = appliance.logs().decode().splitlines()
    for name in ("dhcpd", "tftpd", "http", "nfs", "bootpack"):  # rpcbind is silent
        assert any(line.startswith(f"{name:<8}| ") for line in logs), name


def test_image_carries_oci_labels(client: docker.DockerClient, image: str) -> None:
    labels = client.images.get(image).labels
    assert labels["org.opencontainers.image.title"] == "appliance-test"
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", labels["dev.bootpack.bundle.digest"])


def test_sigterm_stops_everything_within_10_seconds(client: docker.DockerClient, net: BootNet,
                                                    appliance: Container) -> None:
    other = start_appliance(client, net, net.ip(12), ["--interface", "eth0", "--dhcp", "off"],
                            f"bp-appl-{SLOT}-stop")
    try:
        wait_healthy(other)
        start = time.monotonic()
        other.stop(timeout=15)
        seconds = time.monotonic() - start
        other.reload()
        assert other.attrs["State"]["ExitCode"] == 0, other.logs().decode()[-2000:]
        assert seconds < 10
        assert "all services stopped" in other.logs().decode()
    finally:
        other.remove(force=True, v=True)


@pytest.fixture(scope="module")
def proxy_net(client: docker.DockerClient, image: str) -> Iterator[BootNet]:
    with isolated_network(client, IPv4Network(f"10.78.{SLOT}.128/25"), "p") as net:
        yield net


def test_proxy_mode_offers_boot_data_and_no_address(client: docker.DockerClient,
                                                    proxy_net: BootNet) -> None:
    address = proxy_net.ip(2)
    container = start_appliance(client, proxy_net, address, ["--dhcp", "proxy"],
                                f"bp-appl-{SLOT}-proxy")
    try:
        wait_healthy(container)
        offers = dhcp_offers(client, proxy_net, "52:54:00:a7:0e:0e", pxe=True)
        assert offers, container.logs().decode()[-3000:]
        for offer in offers:
            assert offer["yiaddr"] == "0.0.0.0"
            assert offer["vendor_class"] == "PXEClient"
            assert offer["server"] == address
        uefi = dhcp_offers(client, proxy_net, "52:54:00:a7:0e:10", pxe=True, arch=7)
        assert uefi and all(o["yiaddr"] == "0.0.0.0" and o["vendor_class"] == "PXEClient"
                            for o in uefi), uefi
        # no PXE menu for UEFI: the proxy offer itself names the loader and the server; the
        # bundle carries ipxe, which (unlike Debian's GRUB) can boot behind a proxy DHCP
        assert all(o["file"] == "snponly.efi" and o["siaddr"] == address for o in uefi), uefi
        arm64 = dhcp_offers(client, proxy_net, "52:54:00:a7:0e:12", pxe=True, arch=11)
        assert arm64 and all(o["yiaddr"] == "0.0.0.0" and o["file"] == "bootaa64.efi"
                             and o["siaddr"] == address for o in arm64), arm64
        print(f"\nproxy offers, BIOS: {offers}\nUEFI: {uefi}")
        # iPXE asking again through the proxy gets its script's URL, not snponly.efi (trap T3)
        ipxe = dhcp_offers(client, proxy_net, "52:54:00:a7:0e:11", pxe=True, arch=7,
                           user_class="iPXE")
        assert ipxe and all(o["file"] == f"http://{address}/ipxe/boot.ipxe" for o in ipxe), ipxe
        assert not dhcp_offers(client, proxy_net, "52:54:00:a7:0e:0f", pxe=False, timeout=3)
        assert "dnsmasq" in container.logs().decode()
    finally:
        container.remove(force=True, v=True)
