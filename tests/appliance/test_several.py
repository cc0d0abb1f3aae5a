"""Several boot servers on one network, for real: the generic appliance image serving a signed
version pulled from a registry, a Kea HA pair in hot-standby with a failover, and a proxy-DHCP
fleet next to a plain DHCP server.

Everything runs on Docker networks the test creates (10.79.S.0/25 for the HA pair, 10.79.S.128/25
for the proxy fleet, bridges bpbr-a*) and removes; the registry (Debian's docker-registry)
listens only on the HA network's gateway, the host's own address on that bridge. DHCP clients are
busybox udhcpc in small containers on the same networks (the host's static busybox, mounted),
and QEMU VMs whose NIC is a tap on the test bridge. Nothing uses host networking.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from bootpack.cli import main
from tests.support.appliance_env import (
    CAPS,
    SLOT,
    BootNet,
    docker_client_or_skip,
    isolated_network,
    make_bundle,
    tap_device,
    wait_healthy,
)
from tests.support.marker import MARKER
from tests.support.netmarker import nfs_root_tree
from tests.support.registry_server import Registry, registry_available, run_registry
from tests.support.vm import boot_vm, qemu_available

pytestmark = [pytest.mark.docker,
              pytest.mark.skipif(not registry_available(), reason="needs docker-registry")]

# this module's own tag: other test sessions bake bp-appl-test (BOOTPACK_TEST_GENERIC_IMAGE: another
# tag, so concurrent sessions on one engine never run each other's)
GENERIC = os.environ.get("BOOTPACK_TEST_GENERIC_IMAGE") or "bp-appl-several:test"
BUSYBOX = Path("/bin/busybox")  # busybox-static (scripts/install --test)
UDHCPC_SCRIPT = """#!/busybox sh
[ "$1" = bound ] && echo "BOUND ip=$ip serverid=$serverid siaddr=$siaddr boot_file=$boot_file"
exit 0
"""


@functools.cache
def generic_image() -> tuple[str, float]:
    """`bootpack image --generic` (once per session). Returns (tag, seconds)."""
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bootpack", "image", "--generic", "--tag", GENERIC],
                            capture_output=True, text=True,
                            env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
    assert result.returncode == 0, result.stderr + result.stdout
    return GENERIC, time.monotonic() - start


def bootpack(*args: str | Path) -> int:
    return main([str(a) for a in args])


@dataclass(frozen=True)
class Published:
    registry: Registry
    signed: str  # REF:VERSION, signed with key
    unsigned: str  # the same bundle in another repository, not signed
    key: Path  # the private key (stays on the host)
    public: Path


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    client = docker_client_or_skip()
    generic_image()
    return client


@pytest.fixture(scope="module")
def ha_net(client: docker.DockerClient) -> Iterator[BootNet]:
    with isolated_network(client, IPv4Network(f"10.79.{SLOT}.0/25"), "h") as net:
        yield net


@pytest.fixture(scope="module")
def published(ha_net: BootNet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    """The appliance test bundle (10.77.S.0/24 spec, NFS root tree) pushed signed to a registry
    on the HA network's gateway."""
    work = tmp_path_factory.mktemp("several")
    bundle = make_bundle(work, nfs_root_tree())
    with run_registry(work / "registry", addr=ha_net.ip(1)) as registry:
        config = work / "docker-config"
        config.mkdir()
        (config / "config.json").write_text("{}")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DOCKER_CONFIG", str(config))
            assert bootpack("key", "generate", work / "site.key") == 0
            repo = f"{registry.host}/site/boot"
            assert bootpack("-q", "push", bundle, repo, "--no-image", "--insecure",
                            "--sign", work / "site.key") == 0
            assert bootpack("-q", "push", bundle, f"{registry.host}/site/unsigned", "--no-image",
                            "--insecure") == 0
        yield Published(registry, f"{repo}:1.0.0", f"{registry.host}/site/unsigned:1.0.0",
                        work / "site.key", work / "site.key.pub")


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def start(client: docker.DockerClient, net: BootNet, host: int, args: list[str], name: str,
          public_key: Path | None = None) -> Container:
    """A generic appliance at net.ip(host), the public key (only that) copied into /keys."""
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True, v=True)
    ip = net.ip(host)
    networking = client.api.create_networking_config(
        {net.network.name: client.api.create_endpoint_config(ipv4_address=ip)})
    created = client.api.create_container(
        GENERIC, command=["--interface", "eth0", "--address", f"{ip}/{net.subnet.prefixlen}", *args],
        name=name, host_config=client.api.create_host_config(cap_add=CAPS),
        networking_config=networking)
    if public_key is not None:
        client.api.put_archive(created["Id"], "/", _tar({"keys/site.pub": (public_key.read_bytes(), 0o644)}))
    client.api.start(created["Id"])
    return client.containers.get(created["Id"])


def dhcp_client(client: docker.DockerClient, net: BootNet, name: str) -> Container:
    """A long-lived client container (its MAC stays the same across udhcpc runs)."""
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True)
    container = client.containers.run(
        GENERIC, entrypoint=["/busybox", "sleep", "3600"], name=name, network=net.network.name,
        cap_add=["NET_RAW", "NET_ADMIN"], detach=True, healthcheck={"test": ["NONE"]},
        volumes={str(BUSYBOX): {"bind": "/busybox", "mode": "ro"}})
    container.put_archive("/", _tar({"udhcpc.sh": (UDHCPC_SCRIPT.encode(), 0o755)}))
    return container


@dataclass(frozen=True)
class Lease:
    ip: str
    server: str


def udhcpc(container: Container, tries: int = 3, wait: int = 2) -> Lease | None:
    """One DISCOVER/REQUEST cycle with busybox udhcpc: the lease, or None when nobody acked."""
    code, out = container.exec_run(["/busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", str(tries),
                                    "-T", str(wait), "-s", "/udhcpc.sh"])
    text = out.decode(errors="replace")
    match = re.search(r"BOUND ip=(\S+) serverid=(\S+)", text)
    if code != 0 or match is None:
        return None
    return Lease(match[1], match[2])


def wait_for_log(container: Container, pattern: str, timeout: float = 60, since: int | None = None) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if re.search(pattern, container.logs(since=since).decode(errors="replace")):
            return time.monotonic() - start
        container.reload()
        if container.status != "running":
            break
        time.sleep(0.5)
    raise AssertionError(f"{pattern!r} not in the log of {container.name}:\n"
                         f"{container.logs().decode(errors='replace')[-4000:]}")


# -- serving a published version ----------------------------------------------------------------


def test_generic_appliance_refuses_an_unsigned_version(client: docker.DockerClient, ha_net: BootNet,
                                                       published: Published) -> None:
    container = start(client, ha_net, 12, ["--bundle", published.unsigned, "--insecure",
                                           "--verify", "/keys/site.pub"],
                      f"bp-appl-{SLOT}-unsigned", public_key=published.public)
    try:
        result = container.wait(timeout=60)
        logs = container.logs().decode(errors="replace")
        assert result["StatusCode"] == 2, logs
        assert "refusing an unsigned version" in logs and "Traceback" not in logs
        assert "starting daemons" not in logs
    finally:
        container.remove(force=True, v=True)


# -- DHCP high availability: a Kea pair --------------------------------------------------------


@dataclass
class Pair:
    primary: Container
    standby: Container
    net: BootNet
    handed_by_standby: list[str] = field(default_factory=list)  # addresses leased after the failover


@pytest.fixture(scope="module")
def pair(client: docker.DockerClient, ha_net: BootNet, published: Published) -> Iterator[Pair]:
    peers = ["--peer", f"boot-a=http://{ha_net.ip(10)}:8000/",
             "--peer", f"boot-b=http://{ha_net.ip(11)}:8000/"]
    common = ["--bundle", published.signed, "--insecure", "--verify", "/keys/site.pub", *peers]
    primary = start(client, ha_net, 10, common, f"bp-appl-{SLOT}-ha-a", public_key=published.public)
    standby = start(client, ha_net, 11, common, f"bp-appl-{SLOT}-ha-b", public_key=published.public)
    try:
        for container in (primary, standby):
            seconds = wait_healthy(container)
            print(f"\n{container.name} healthy {seconds:.1f} s after start")
            logs = container.logs().decode(errors="replace")
            assert "signature ok" in logs and "DHCP high availability (Kea, hot-standby)" in logs
        for container in (primary, standby):  # both synchronised, in the hot-standby state
            wait_for_log(container, r"HA_STATE_TRANSITION.* to HOT-STANDBY state", timeout=60)
        yield Pair(primary, standby, ha_net)
    finally:
        for container in (primary, standby):
            with contextlib.suppress(docker.errors.APIError):
                print(f"--- {container.name}\n{container.logs().decode(errors='replace')[-3000:]}")
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True, v=True)


def test_ha_pair_failover_keeps_leases(client: docker.DockerClient, pair: Pair) -> None:
    net = pair.net
    first = dhcp_client(client, net, f"bp-appl-{SLOT}-c1")
    second = dhcp_client(client, net, f"bp-appl-{SLOT}-c2")
    try:
        lease = udhcpc(first)
        assert lease is not None, pair.primary.logs().decode()[-3000:]
        assert lease.server == net.ip(10), "in hot-standby the primary answers"
        pool = [net.ip(n) for n in range(100, 121)]
        assert lease.ip in pool
        # The lease reached the standby (Kea's lease updates) before the failover.
        _, leases = pair.standby.exec_run(["cat", "/run/bootpack/kea-leases4.csv"])
        assert lease.ip in leases.decode(), leases.decode()

        pair.primary.kill()  # power loss, not a clean stop
        stopped = time.monotonic()
        answered = None
        while time.monotonic() - stopped < 60:
            answered = udhcpc(second, tries=1, wait=1)
            if answered is not None:
                break
        failover = time.monotonic() - stopped
        assert answered is not None, pair.standby.logs().decode()[-3000:]
        print(f"\nfailover: primary killed -> first lease from the standby in {failover:.1f} s")
        assert answered.server == net.ip(11) and answered.ip in pool and answered.ip != lease.ip
        pair.handed_by_standby.append(answered.ip)

        again = udhcpc(first)
        assert again == Lease(lease.ip, net.ip(11)), "the lease handed before the failover is kept"
        logs = pair.standby.logs().decode(errors="replace")
        assert re.search(r"HA_STATE_TRANSITION.* to PARTNER-DOWN state", logs)
    finally:
        for c in (first, second):
            c.remove(force=True)


@pytest.mark.boot
def test_ha_standby_boots_a_vm_after_failover(pair: Pair, tmp_path: Path) -> None:
    """After the failover above, a VM PXE-boots through the standby (DHCP from Kea, TFTP from the
    pulled, verified bundle)."""
    if not qemu_available():
        pytest.fail("qemu-system-x86_64 and ipxe-qemu are needed (scripts/install --test)")
    pair.primary.reload()
    if pair.primary.status == "running":
        pair.primary.kill()
    with tap_on(pair.net, "h") as tap:
        boot = boot_vm(tmp_path / "serial.log", "52:54:00:a7:0b:01", f"{MARKER} done", tap=tap,
                       timeout=240)
    print(f"\nVM through the standby: {'marker' if boot.found else 'NO marker'} after {boot.seconds:.1f} s")
    assert boot.found, boot.log[-4000:]
    assert "bootpack.entry=marker" in boot.log


def tap_on(net: BootNet, tag: str) -> contextlib.AbstractContextManager[str]:
    return tap_device(net, f"bptap-a{SLOT}{tag}")


# -- proxy-DHCP fleet: stateless, any number side by side ----------------------------------------


@dataclass
class Fleet:
    proxies: tuple[Container, ...]
    dhcp: Container  # a plain DHCP server (dnsmasq, no boot options): the site's own
    net: BootNet


@pytest.fixture(scope="module")
def fleet(client: docker.DockerClient, published: Published) -> Iterator[Fleet]:
    with isolated_network(client, IPv4Network(f"10.79.{SLOT}.128/25"), "p") as net:
        name = f"bp-appl-{SLOT}-plaindhcp"
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
        dhcp = client.containers.run(
            GENERIC, name=name, detach=True, cap_add=["NET_ADMIN", "NET_RAW"],
            healthcheck={"test": ["NONE"]},
            entrypoint=["dnsmasq", "--keep-in-foreground", "--log-facility=-", "--log-dhcp",
                        "--port=0", "--user=root", "--interface=eth0", "--bind-interfaces",
                        f"--dhcp-range={net.ip(100)},{net.ip(120)},255.255.255.128,10m",
                        "--dhcp-leasefile=/tmp/leases", "--dhcp-authoritative"],
            network=net.network.name)
        proxies = tuple(
            start(client, net, host, ["--dhcp", "proxy", "--bundle", published.signed, "--insecure",
                                      "--verify", "/keys/site.pub"],
                  f"bp-appl-{SLOT}-proxy{host}", public_key=published.public)
            for host in (10, 11))
        try:
            for proxy in proxies:
                print(f"\n{proxy.name} healthy {wait_healthy(proxy):.1f} s after start")
            yield Fleet(proxies, dhcp, net)
        finally:
            for container in (*proxies, dhcp):
                with contextlib.suppress(docker.errors.APIError):
                    print(f"--- {container.name}\n{container.logs().decode(errors='replace')[-2000:]}")


def test_proxy_fleet_next_to_a_plain_dhcp_server(client: docker.DockerClient, fleet: Fleet) -> None:
    net = fleet.net
    probe = ["/opt/bootpack/bin/python", "-m", "bootpack.appliance.dhcp_probe", "--interface", "eth0",
             "--mac", "52:54:00:a7:0f:01", "--pxe", "--timeout", "4"]
    output = client.containers.run(GENERIC, entrypoint=probe, network=net.network.name,
                                   cap_add=["NET_RAW"], remove=True, stdout=True, stderr=False)
    offers = [json.loads(line) for line in output.decode().splitlines() if line.strip()]
    print("\noffers:\n" + "\n".join(json.dumps(o, sort_keys=True) for o in offers))
    by_server = {o["server"]: o for o in offers}
    fleet.dhcp.reload()
    plain = fleet.dhcp.attrs["NetworkSettings"]["Networks"][net.network.name]["IPAddress"]
    assert set(by_server) == {plain, net.ip(10), net.ip(11)}, offers
    # Only the plain server hands out addresses; each proxy offers boot data pointing to itself.
    assert by_server[plain]["yiaddr"] in [net.ip(n) for n in range(100, 121)]
    for host in (10, 11):
        reply = by_server[net.ip(host)]
        assert reply["yiaddr"] == "0.0.0.0" and reply["vendor_class"] == "PXEClient"
        # dnsmasq's proxy reply names its boot server (itself) in the PXE options (43, sub 8).
        assert IPv4Address(net.ip(host)).packed.hex() in reply["options"]["43"]
    # A plain client gets its lease from the site's server, undisturbed by the fleet.
    c = dhcp_client(client, net, f"bp-appl-{SLOT}-pc")
    try:
        lease = udhcpc(c)
        assert lease is not None and lease.server == plain
    finally:
        c.remove(force=True)


@pytest.mark.boot
def test_proxy_fleet_boots_a_vm(fleet: Fleet, tmp_path: Path) -> None:
    if not qemu_available():
        pytest.fail("qemu-system-x86_64 and ipxe-qemu are needed (scripts/install --test)")
    with tap_on(fleet.net, "p") as tap:
        boot = boot_vm(tmp_path / "serial.log", "52:54:00:a7:0f:02", f"{MARKER} done", tap=tap,
                       timeout=240)
    print(f"\nVM through the proxy fleet: {'marker' if boot.found else 'NO marker'} after "
          f"{boot.seconds:.1f} s")
    assert boot.found, boot.log[-4000:]
    # Its boot timeline, from the proxy that served it (both answered its PXE DHCP; the ROM took
    # one): DHCP stages from dnsmasq's proxy answers, the rest as in server mode, then `up`.
    hosts = {}
    for proxy in fleet.proxies:
        code, out = proxy.exec_run(["bootpack", "status", "--json"])
        assert code == 0, out
        report = json.loads(out)
        assert report["mode"] == "proxy"
        hosts[proxy.name] = next(h for h in report["hosts"] if h["mac"] == "52:54:00:a7:0f:02")
    served = [h for h in hosts.values() if "loader" in h["boots"][-1]["stages"]]
    assert len(served) == 1, hosts
    [host] = served
    boot_view = host["boots"][-1]
    print(f"proxy-mode timeline: {boot_view['stages']}")
    assert (host["known"], host["entry"], host["state"], boot_view["config"]) == \
        (False, "marker", "up", "default")
    assert list(boot_view["stages"]) == ["dhcp-discover", "dhcp-offer", "dhcp-ack", "loader", "config",
                                         "kernel", "initrd", "up"], boot_view["stages"]
    dhcp = [e["detail"] for e in boot_view["events"] if e["stage"].startswith("dhcp-")]
    assert dhcp[0] == "proxy pxe" and all(d.startswith("proxy ") for d in dhcp), dhcp


def test_ha_primary_comes_back_and_gets_the_standbys_leases(pair: Pair) -> None:
    """Restarted after the failover, the primary pulls and verifies its version again, syncs the
    leases the standby handed out meanwhile and the pair is back in hot-standby."""
    assert pair.handed_by_standby, "runs after test_ha_pair_failover_keeps_leases"
    pair.primary.reload()
    if pair.primary.status == "running":
        pair.primary.kill()
    since = int(time.time())
    pair.primary.start()
    seconds = wait_for_log(pair.primary, r"HA_STATE_TRANSITION.* to HOT-STANDBY state", since=since)
    print(f"\nprimary back in hot-standby {seconds:.1f} s after its restart")
    _, leases = pair.primary.exec_run(["cat", "/run/bootpack/kea-leases4.csv"])
    for ip in pair.handed_by_standby:
        assert ip in leases.decode(), leases.decode()
