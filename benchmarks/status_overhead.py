"""Benchmark: what boot tracking costs the appliance's `bootpack serve` process.

    .venv/bin/python -m benchmarks.status_overhead [CLIENTS] [BOOTS_EACH]

Replays the daemon lines a real marker boot produced in the appliance (recorded in
tests/appliance/data/appliance-boot.log) as CLIENTS clients booting BOOTS_EACH times each, all
interleaved, through the supervisor's Output: once without the tap, once with the parser, the
timeline and the metrics. Prints CPU seconds, per-line cost and the memory the timeline holds.
The daemons themselves do the same work either way (nginx logs a few more fields per request).
"""

from __future__ import annotations

import io
import resource
import sys
import time
import tracemalloc
from pathlib import Path

from bootpack.appliance.bootlog import parse_line
from bootpack.appliance.metrics import Metrics
from bootpack.appliance.supervisor import Output
from bootpack.appliance.timeline import Timeline
from bootpack.spec.load import parse_spec

RECORDED = Path(__file__).resolve().parents[1] / "tests/appliance/data/appliance-boot.log"
MAC = "52:54:00:a7:00:01"


def recorded() -> tuple[list[tuple[str, str]], str]:
    """(service, text) lines of one boot, and the client IP in them."""
    lines = []
    ip = ""
    for raw in RECORDED.read_text().splitlines():
        name, _, text = raw.partition("| ")
        lines.append((name.strip(), text))
        if "DHCPACK on" in text and not ip:
            ip = text.split()[2]
    return lines, ip


def workload(clients: int, boots: int) -> list[tuple[str, str]]:
    lines, ip = recorded()
    out = []
    for boot in range(boots):
        for number, (name, text) in enumerate(lines):
            for client in range(clients):  # interleaved, as when all boot at once
                mac = f"52:54:00:b0:{client // 256:02x}:{client % 256:02x}"
                addr = ip.rsplit(".", 1)[0] + f".{100 + client}"
                out.append((name, text.replace(MAC, mac).replace(ip, addr)))
            del number
        del boot
    return out


def run(lines: list[tuple[str, str]], track: bool, trace: bool = False) -> tuple[float, int]:
    """CPU seconds for the lines (without tracing) or the memory held after them (trace)."""
    out = Output(io.StringIO())
    timeline = None
    if track:
        spec = parse_spec({"schema": 1, "bundle": {"name": "b", "version": "1.0.0"},
                           "server": {"address": "10.0.0.2"}, "dhcp": {"mode": "none"},
                           "images": {"marker": {"kernel": "vmlinuz", "initrd": "initrd.img"}},
                           "entries": [{"name": "marker", "image": "marker"}]})
        metrics = Metrics(["marker"])
        timeline = Timeline(spec, own_address="10.0.0.2", file_size=lambda p: 1000, listener=metrics)

        def tap(name: str, text: str) -> None:
            event = parse_line(name, text)
            if event is not None:
                timeline.feed(event)

        out.taps.append(tap)
    if trace:
        tracemalloc.start()
    start = time.process_time()
    for name, text in lines:
        out.line(name, text)
        if out.stream.tell() > 1 << 22:  # keep the sink small (stdout in the real appliance)
            out.stream.seek(0)
            out.stream.truncate()
    cpu = time.process_time() - start
    if timeline is not None:
        timeline.view()
    if not trace:
        return cpu, 0
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return cpu, current


def main(argv: list[str]) -> None:
    clients = int(argv[0]) if argv else 20
    boots = int(argv[1]) if len(argv) > 1 else 10
    lines = workload(clients, boots)
    base_cpu = min(run(lines, track=False)[0] for _ in range(3))
    cpu = min(run(lines, track=True)[0] for _ in range(3))
    base_mem = run(lines, track=False, trace=True)[1]
    mem = run(lines, track=True, trace=True)[1]
    print(f"{clients} clients x {boots} boots: {len(lines)} daemon lines")
    print(f"without tracking: {base_cpu:.3f} s CPU ({base_cpu / len(lines) * 1e6:.1f} us/line), "
          f"{base_mem / 1e6:.2f} MB held")
    print(f"with tracking:    {cpu:.3f} s CPU ({cpu / len(lines) * 1e6:.1f} us/line), "
          f"{mem / 1e6:.2f} MB held (timeline, {clients} hosts x up to 10 boots)")
    print(f"added: {(cpu - base_cpu) / len(lines) * 1e6:.1f} us CPU per line; "
          f"{(cpu - base_cpu) / (clients * boots) * 1e3:.2f} ms per boot; "
          f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
