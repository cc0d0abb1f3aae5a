"""`bootpack health`: probes that really use each service, as a client would.

- the supervisor's state: every daemon running (none waiting for a restart);
- TFTP: read pxelinux.0 in full, negotiating tsize and blksize (RFC 1350, 2347-2349);
- HTTP: GET the first kernel (a one-byte range, so the probe stays cheap);
- NFS: list every export with `nfs-ls` (libnfs, user space).

The addresses and paths come from the state file `bootpack serve` writes, so the probe checks
exactly what the running appliance serves.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BootpackError

DEFAULT_RUNTIME = "/run/bootpack"
STATE = "state.json"


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
    result = subprocess.run(["nfs-ls", url], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise OSError(f"nfs-ls {url}: {(result.stderr or result.stdout).strip()[-300:]}")
    return f"{url}: {len(result.stdout.splitlines())} entries"


def read_state(runtime: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((runtime / STATE).read_text())
    except FileNotFoundError:
        raise BootpackError(f"{runtime / STATE}: not found; is `bootpack serve` running "
                            "(with this --runtime-dir)?") from None
    return data


def check(state: dict[str, Any]) -> list[Check]:
    results: list[Check] = []
    for name, service in sorted(state.get("services", {}).items()):
        ok = service.get("state") == "running"
        results.append(Check(f"service {name}", ok, f"{service.get('state')} pid {service.get('pid')} "
                             f"restarts {service.get('restarts')}"))
    address = state["address"]

    def attempt(name: str, fn: Any, *args: Any) -> None:
        try:
            results.append(Check(name, True, fn(*args)))
        except (OSError, subprocess.SubprocessError) as exc:
            results.append(Check(name, False, str(exc)))

    def tftp() -> str:
        loader = state.get("loader") or "pxelinux.0"  # the first file a client fetches
        data, options = tftp_read(address, loader)
        return f"{loader}: {len(data)} bytes, options {options}"

    attempt("tftp", tftp)
    if state.get("kernel"):
        attempt("http", http_probe, f"{state['http_base']}/{state['kernel']}")
    for export in state.get("exports", []):
        attempt(f"nfs {export}", nfs_list, address, export)
    return results


def run_health(runtime: Path, retries: int = 1, delay: float = 1.0) -> tuple[bool, list[Check]]:
    results: list[Check] = []
    for attempt in range(retries):
        results = check(read_state(runtime))
        if all(r.ok for r in results):
            return True, results
        if attempt + 1 < retries:
            time.sleep(delay)
    return False, results


def default_runtime() -> Path:
    return Path(os.environ.get("BOOTPACK_RUNTIME_DIR", DEFAULT_RUNTIME))
