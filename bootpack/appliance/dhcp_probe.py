"""A minimal DHCP client: send one DHCPDISCOVER on an interface and collect the offers.

`bootpack serve` uses it before starting its own DHCP server, to refuse to fight another server
on the same network. The tests use it (run in a container on the test network) as the client
that checks what the appliance offers: next-server, boot file, fixed address, proxy replies.

    python -m bootpack.appliance.dhcp_probe --interface eth0 [--mac MAC] [--pxe] [--timeout 3]

prints the offers as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER = 1, 2
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


@dataclass
class Offer:
    server: str  # address the offer came from (option 54, else the packet's source)
    yiaddr: str  # offered address; 0.0.0.0 from a proxy-DHCP server
    siaddr: str  # next-server
    file: str  # boot file name (option 67, else the BOOTP file field)
    message_type: int
    vendor_class: str = ""  # option 60 (proxy replies say PXEClient)
    options: dict[int, str] = field(default_factory=dict)  # hex of every option


def interface_mac(interface: str) -> str:
    return Path(f"/sys/class/net/{interface}/address").read_text().strip()


def discover_packet(mac: str, xid: int, pxe: bool = False, arch: int = 0,
                    user_class: str | None = None) -> bytes:
    chaddr = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000,
                         b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4,
                         chaddr.ljust(16, b"\0"), b"\0" * 64, b"\0" * 128)
    options = bytes([53, 1, DISCOVER]) + bytes([55, 6, 1, 3, 6, 66, 67, 60])
    if pxe:
        # As firmware says it: BIOS PXE, UEFI PXE (7, 9) or UEFI HTTP boot (16).
        kind = "HTTPClient" if arch in (15, 16, 19) else "PXEClient"
        undi = "002001" if arch == 0 else "003000"
        vendor = f"{kind}:Arch:{arch:05d}:UNDI:{undi}".encode()
        options += bytes([60, len(vendor)]) + vendor
        options += bytes([93, 2]) + arch.to_bytes(2, "big")  # client system architecture
        options += bytes([94, 3, 1, 2, 1])  # network interface identifier: UNDI 2.1
        options += bytes([97, 17, 0]) + bytes(range(16))  # client machine identifier (UUID)
    if user_class:
        # option 77 as iPXE sends it: the bare word (e.g. "iPXE"), not RFC 3004's format
        options += bytes([77, len(user_class)]) + user_class.encode()
    return header + MAGIC + options + b"\xff"


def _cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def parse_offer(packet: bytes, source: str, xid: int) -> Offer | None:
    if len(packet) < 240 or packet[0] != 2 or packet[236:240] != MAGIC:
        return None
    if struct.unpack("!I", packet[4:8])[0] != xid:
        return None
    options: dict[int, bytes] = {}
    i = 240
    while i < len(packet) and packet[i] != 255:
        code = packet[i]
        if code == 0:
            i += 1
            continue
        length = packet[i + 1]
        options[code] = packet[i + 2:i + 2 + length]
        i += 2 + length
    kind = options.get(53, b"\0")[0]
    server = str(IPv4Address(options[54])) if len(options.get(54, b"")) == 4 else source
    file = _cstring(options[67]) if 67 in options else _cstring(packet[108:236])
    return Offer(server=server, yiaddr=str(IPv4Address(packet[16:20])),
                 siaddr=str(IPv4Address(packet[20:24])), file=file, message_type=kind,
                 vendor_class=_cstring(options.get(60, b"")),
                 options={k: v.hex() for k, v in sorted(options.items())})


def probe(interface: str, timeout: float = 2.5, mac: str | None = None, pxe: bool = False,
          port: int = 68, arch: int = 0, user_class: str | None = None) -> list[Offer]:
    """Broadcast one DHCPDISCOVER on `interface`; every OFFER (or proxy reply) within timeout."""
    mac = mac or interface_mac(interface)
    xid = random.getrandbits(32)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        sock.bind(("0.0.0.0", port))
        sock.sendto(discover_packet(mac, xid, pxe, arch, user_class), ("255.255.255.255", 67))
        offers: list[Offer] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            packet, (source, _) = sock.recvfrom(4096)
            offer = parse_offer(packet, source, xid)
            if offer is not None and offer.message_type == OFFER:
                offers.append(offer)
        return offers
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bootpack.appliance.dhcp_probe",
                                     description="Send one DHCPDISCOVER and print the offers (JSON).")
    parser.add_argument("--interface", default=os.environ.get("BOOTPACK_INTERFACE", "eth0"))
    parser.add_argument("--mac", help="client MAC (default: the interface's)")
    parser.add_argument("--pxe", action="store_true", help="ask as a PXE client (option 60 etc.)")
    parser.add_argument("--arch", type=int, default=0,
                        help="with --pxe: option 93, e.g. 0 BIOS, 7 x86-64 UEFI, 16 UEFI HTTP boot")
    parser.add_argument("--user-class", help="option 77, e.g. iPXE (as iPXE itself asks)")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    offers = probe(args.interface, args.timeout, args.mac, args.pxe, arch=args.arch,
                   user_class=args.user_class)
    for offer in offers:
        print(json.dumps(asdict(offer), sort_keys=True))
    return 0 if offers else 1


if __name__ == "__main__":
    sys.exit(main())
