"""`bootpack health`: probes that really use each service, as a client would.

- the supervisor's state: every daemon running (none waiting for a restart);
- TFTP: read pxelinux.0 in full, negotiating tsize and blksize (RFC 1350, 2347-2349);
- HTTP: GET the first kernel (a one-byte range, so the probe stays cheap);
- NFS: list every export with `nfs-ls` (libnfs, user space).

The addresses and paths come from the ServeState `bootpack serve` writes, so the probe checks
exactly what the running appliance serves.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BootpackError
from ..external import run
from .state import ServeState


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def tftp_read(host: str, path: str, *, port: int = 69, blksize: int = 1428, timeout: float = 3.0,
              retries: int = 3) -> tuple[bytes, dict[str, int]]:
    """Read a file over TFTP in octet mode with tsize and blksize; returns (data, options acked)."""
    request = (struct.pack("!H", 1) + path.encode() + b"\0octet\0tsize\x000\0blksize\0"
               + str(blksize).encode() + b"\0")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        sock.sendto(request, (host, port))
        data = bytearray()
        options: dict[str, int] = {}
        size = 512
        expected = 1
        last_ack: bytes | None = None
        peer: tuple[str, int] | None = None
        tries = 0
        while True:
            try:
                packet, source = sock.recvfrom(65536)
            except TimeoutError:
                tries += 1
                if tries > retries:
                    raise TimeoutError(f"TFTP {host}:{path}: no answer") from None
                if last_ack is not None and peer is not None:
                    sock.sendto(last_ack, peer)
                else:
                    sock.sendto(request, (host, port))
                continue
            peer = peer or source
            if source != peer:
                continue
            opcode = struct.unpack("!H", packet[:2])[0]
            if opcode == 5:
                code = struct.unpack("!H", packet[2:4])[0]
                message = packet[4:].split(b"\0")[0].decode(errors="replace")
                raise OSError(f"TFTP error {code}: {message}")
            if opcode == 6:  # OACK
                words = packet[2:].split(b"\0")
                options = {words[i].decode().lower(): int(words[i + 1])
                           for i in range(0, len(words) - 1, 2) if words[i]}
                size = options.get("blksize", 512)
                last_ack = struct.pack("!HH", 4, 0)
                sock.sendto(last_ack, peer)
                continue
            if opcode == 3:
                block = struct.unpack("!H", packet[2:4])[0]
                if block == expected & 0xFFFF:
                    data += packet[4:]
                    expected += 1
                last_ack = struct.pack("!HH", 4, block)
                sock.sendto(last_ack, peer)
                if block == (expected - 1) & 0xFFFF and len(packet) - 4 < size:
                    return bytes(data), options
    finally:
        sock.close()


def http_probe(url: str, timeout: float = 5.0) -> str:
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
        status = response.status
    if status != 206 or len(body) != 1:
        raise OSError(f"expected 206 with one byte, got {status} with {len(body)}")
    return f"{url}: 206"


def nfs_list(address: str, path: str, version: int = 4, timeout: float = 10.0) -> str:
    url = f"nfs://{address}{path}?version={version}"
    result = run(["nfs-ls", url], what=f"nfs-ls {url}", timeout=timeout)
    return f"{url}: {len(result.stdout.splitlines())} entries"


def check(state: ServeState) -> list[Check]:
    results = [Check(f"service {name}", d.state == "running",
                     f"{d.state} pid {d.pid} restarts {d.restarts}")
               for name, d in sorted(state.daemons.items())]

    def attempt(name: str, fn: Callable[..., str], *args: str) -> None:
        try:
            results.append(Check(name, True, fn(*args)))
        except (OSError, BootpackError) as exc:
            results.append(Check(name, False, str(exc)))

    def tftp() -> str:
        data, options = tftp_read(state.address, state.loader)
        return f"{state.loader}: {len(data)} bytes, options {options}"

    attempt("tftp", tftp)
    if state.kernel:
        attempt("http", http_probe, f"{state.http_base}/{state.kernel}")
    for export in state.exports:
        attempt(f"nfs {export}", nfs_list, state.address, export)
    return results


HEALTH_FILE = "health.json"  # the last results, for /metrics (bootpack.appliance.metrics)


def record(runtime: Path, results: list[Check]) -> None:
    """Leave the results where the running appliance's /metrics reads them (best effort)."""
    data = {"time": time.time(), "checks": {r.name: r.ok for r in results}}
    path = runtime / HEALTH_FILE
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass


def run_health(runtime: Path, retries: int = 1, delay: float = 1.0) -> tuple[bool, list[Check]]:
    results: list[Check] = []
    for attempt in range(retries):
        results = check(ServeState.read(runtime))
        if all(r.ok for r in results):
            record(runtime, results)
            return True, results
        if attempt + 1 < retries:
            time.sleep(delay)
    record(runtime, results)
    return False, results
