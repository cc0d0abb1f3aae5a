"""The one format every benchmark reports in, so `python -m benchmarks` can gather them.

A benchmark module measures, then calls `write(name, figures)`; that leaves
benchmarks/results/NAME.json. The README table and the plot under docs/ are made from those
files, never typed by hand.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Figure:
    """One measured line of a benchmark: what, the value now, the goal, and the figure before."""

    measure: str  # e.g. "live entry: power-on to marker, bootpack / seed-style"
    value: float  # the number measured in this run
    unit: str  # "s", "x", "MB", "MB/s", "failures"
    goal: str = ""  # as the issue states it, e.g. "<= 0.5x"
    before: str = ""  # the figure before the change, as text (e.g. "~1.0x", "35 s")
    met: bool | None = None  # None: no goal to meet
    detail: str = ""  # phases, the alternative's figure, sample count


def machine() -> str:
    """Where the figures were taken: CPU count, model, kernel; benchmarks carry it."""
    import os

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model or platform.processor()}, Linux {platform.release()}"


def contention() -> str:
    """How busy the machine was: the load average and, where the kernel has PSI, the share of
    the last minute some task waited for a CPU (wall times on a shared machine are mostly that)."""
    load = f"load average {os.getloadavg()[0]:.1f}"
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        avg60 = dict(part.split("=") for part in first.split()[1:])["avg60"]
    except (OSError, IndexError, KeyError, ValueError):
        return load
    return f"{load}, CPU pressure {float(avg60):.0f}%"


def write(name: str, figures: list[Figure]) -> Path:
    """Store one benchmark's figures as benchmarks/results/NAME.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "benchmark": name,
        "taken": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "figures": [asdict(f) for f in figures],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def read_all() -> list[dict[str, object]]:
    """Every stored result document, sorted by benchmark name."""
    if not RESULTS.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
