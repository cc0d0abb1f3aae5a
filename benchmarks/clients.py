"""Benchmark: 100 clients at once fetching the NBP over TFTP and kernel + initrd over HTTP from
one appliance, next to plain nginx serving the same files on the same box (issue 12).

    .venv/bin/python -m benchmarks.clients [CLIENTS]

Runs the test appliance image (tests.support.appliance_env; $BOOTPACK_TEST_IMAGE picks the tag,
built when missing) on a Docker bridge network this benchmark creates and removes (never host
networking), and a client container on it with real clients: tftp-hpa's `tftp` for pxelinux.0,
curl for the marker kernel and initrd, CLIENTS of each at once. Three rounds: the appliance with
TFTP then HTTP per client (failures counted: a non-zero exit or a short file); the appliance over
HTTP alone; plain nginx (the appliance image's own nginx binary, default settings, a bare config)
serving the same tftpboot/ folder over HTTP alone. Writes results/clients.json.
"""

from __future__ import annotations

import os
import re
import sys
import time
from ipaddress import IPv4Network

import docker
import docker.errors
import docker.types

from benchmarks.report import Figure, write

BRANCH = "speed-rebuild"  # prefix of everything this benchmark creates on the shared engine
CLIENT_IMAGE = f"{BRANCH}-clients:latest"
CLIENT_DOCKERFILE = (
    "FROM debian:bookworm-slim\n"
    "RUN apt-get update && apt-get install -y --no-install-recommends tftp-hpa curl "
    "&& rm -rf /var/lib/apt/lists/*\n"
)
NBP = "pxelinux.0"
FILES = ("images/marker/vmlinuz", "images/marker/initrd.img")
# One client: the NBP over TFTP (unless $TFTP is 0), then the kernel and initrd over HTTP;
# prints "RESULT <ok> <bytes>". tftp-hpa exits 0 on some errors, so sizes are checked too.
CLIENT = r"""
server=$1; n=$2; tftp_on=$3; nbp_size=$4; shift 4
one() {
  n=$1; shift  # the rest: the HTTP paths
  ok=1; bytes=0; dir=/tmp/c$n; mkdir -p $dir
  if [ "$tftp_on" = 1 ]; then
    tftp -m binary "$server" -c get pxelinux.0 $dir/nbp || ok=0
    size=$(stat -c %s $dir/nbp 2>/dev/null || echo 0)
    [ "$size" = "$nbp_size" ] || ok=0
    bytes=$((bytes + size))
  fi
  for f in "$@"; do
    got=$(curl -fsS --max-time 300 -o /dev/null -w '%{size_download}' "http://$server/$f") || ok=0
    bytes=$((bytes + ${got:-0}))
  done
  echo "RESULT $ok $bytes"
}
start=$(date +%s.%N)
for i in $(seq 1 $n); do one $i "$@" & done
wait
echo "WALL $start $(date +%s.%N)"
"""
NGINX_CONF = (
    "events {} http { server { listen 80; root /srv/bootpack/tftpboot; } }"
)


def client_image(client: docker.DockerClient) -> None:
    try:
        client.images.get(CLIENT_IMAGE)
    except docker.errors.ImageNotFound:
        import io

        client.images.build(fileobj=io.BytesIO(CLIENT_DOCKERFILE.encode()), tag=CLIENT_IMAGE,
                            rm=True)


def load(client: docker.DockerClient, network: str, server: str, clients: int, tftp: bool,
         nbp_size: int) -> tuple[int, float, int]:
    """(failures, seconds, bytes) of CLIENTS clients at once against server."""
    out = client.containers.run(
        CLIENT_IMAGE, ["sh", "-c", CLIENT, "clients", server, str(clients), "1" if tftp else "0",
                       str(nbp_size), *FILES],
        network=network, remove=True, name=f"{BRANCH}-clients-{os.getpid()}",
        stderr=True).decode()
    results = re.findall(r"^RESULT (\d) (\d+)$", out, re.M)
    wall = re.search(r"^WALL ([\d.]+) ([\d.]+)$", out, re.M)
    assert wall is not None, out[-2000:]
    failures = clients - sum(ok == "1" for ok, _ in results)
    return failures, float(wall.group(2)) - float(wall.group(1)), sum(int(b) for _, b in results)


def main(argv: list[str]) -> None:
    clients = int(argv[0]) if argv else 100
    os.environ.setdefault("BOOTPACK_TEST_IMAGE", f"{BRANCH}-appl:latest")
    from tests.support.appliance_env import CAPS, IMAGE_TAG, appliance_image, wait_healthy

    engine = docker.from_env()
    try:
        engine.images.get(IMAGE_TAG)
    except docker.errors.ImageNotFound:
        appliance_image()
    client_image(engine)
    slot = 20 + os.getpid() % 200
    subnet = IPv4Network(f"10.75.{slot}.0/24")
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
        subnet=str(subnet), gateway=str(subnet.network_address + 1),
        iprange=str(IPv4Network(f"{subnet.network_address + 32}/27")))])
    name = f"{BRANCH}-net-{os.getpid()}"
    network = engine.networks.create(name, driver="bridge", ipam=ipam,
                                     options={"com.docker.network.bridge.name": f"bpsr{slot}"})
    appliance_ip, nginx_ip = str(subnet.network_address + 10), str(subnet.network_address + 11)
    started = []
    try:
        def start(what: str, ip: str, **kw: object) -> docker.models.containers.Container:
            networking = engine.api.create_networking_config(
                {name: engine.api.create_endpoint_config(ipv4_address=ip)})
            created = engine.api.create_container(
                IMAGE_TAG, name=f"{BRANCH}-{what}-{os.getpid()}", networking_config=networking,
                host_config=engine.api.create_host_config(cap_add=CAPS), **kw)
            engine.api.start(created["Id"])
            container = engine.containers.get(created["Id"])
            started.append(container)
            return container

        appliance = start("appl", appliance_ip,
                          command=["--interface", "eth0", "--address", f"{appliance_ip}/24"])
        wait_healthy(appliance)
        start("nginx", nginx_ip, entrypoint=["sh", "-c", f"echo '{NGINX_CONF}' > /tmp/n.conf "
                                             "&& exec nginx -c /tmp/n.conf -g 'daemon off;'"])
        time.sleep(2)
        nbp_size = int(appliance.exec_run(["stat", "-c", "%s",
                                           f"/srv/bootpack/tftpboot/{NBP}"]).output)
        rounds = {}
        for label, server, tftp in (("appliance TFTP+HTTP", appliance_ip, True),
                                    ("appliance HTTP", appliance_ip, False),
                                    ("plain nginx HTTP", nginx_ip, False)):
            failures, seconds, size = load(engine, name, server, clients, tftp, nbp_size)
            rounds[label] = (failures, seconds, size)
            print(f"{label}: {clients} clients, {failures} failures, {seconds:.1f} s, "
                  f"{size / 1e6:.0f} MB, {size / 1e6 / seconds:.1f} MB/s", flush=True)
    finally:
        for container in started:
            container.remove(force=True, v=True)
        network.remove()
    failures, seconds, size = rounds["appliance TFTP+HTTP"]
    rate = {k: v[2] / 1e6 / v[1] for k, v in rounds.items()}
    write("clients", [Figure(
        measure=f"{clients} clients at once fetching the NBP over TFTP and kernel + initrd over "
                "HTTP from one appliance",
        value=failures, unit="failures", goal="0 failures; aggregate rate next to nginx",
        before="not measured", met=failures == 0 and all(v[0] == 0 for v in rounds.values()),
        detail=f"TFTP+HTTP: {seconds:.1f} s, {rate['appliance TFTP+HTTP']:.0f} MB/s aggregate; "
               f"HTTP alone: appliance {rate['appliance HTTP']:.0f} MB/s "
               f"({rounds['appliance HTTP'][0]} failures), plain nginx "
               f"{rate['plain nginx HTTP']:.0f} MB/s ({rounds['plain nginx HTTP'][0]} failures); "
               f"{size / clients / 1e6:.1f} MB per client; load average {os.getloadavg()[0]:.1f}")])


if __name__ == "__main__":
    main(sys.argv[1:])
