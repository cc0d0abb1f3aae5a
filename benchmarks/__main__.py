"""Run the benchmarks, then regenerate the README's benchmark table and docs/benchmarks.png.

    .venv/bin/python -m benchmarks                 # every benchmark (an hour or more on 2 cores)
    .venv/bin/python -m benchmarks --quick         # the fast ones only (about a minute)
    .venv/bin/python -m benchmarks build rebuild   # these only
    .venv/bin/python -m benchmarks --table         # no runs: table and plot from results/

Each benchmark runs as its own process (`python -m benchmarks.NAME`); those that measure a goal
of issue 12 write benchmarks/results/NAME.json (benchmarks/report.py), which the table and the
plot are made from (benchmarks/table.py). The boot benchmark (boot_speed) needs root (a tap and
a packet capture) and about half an hour; a named module that is missing is skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import report, table

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PLOT = REPO / "docs" / "benchmarks.png"

# name -> (arguments of a full run, arguments of a --quick run or None: not part of --quick)
BENCHMARKS: dict[str, tuple[list[str], list[str] | None]] = {
    "build": ([], ["1000"]),  # render + build against the number of hosts
    "rebuild": ([], None),  # rebuilds of the Debian livenet bundle (builds its image once)
    "clients": ([], None),  # 100 clients fetching from one appliance, next to nginx
    "boot_speed": ([], None),  # boot times, bootpack vs seed-style
    "status_overhead": ([], ["20", "2"]),
    "status_container": ([], None),
    "replace_check": ([], ["2000", "50"]),
    "nfs_boots": (["--boots", "2"], None),
}


def run(name: str, quick: bool) -> bool:
    full, fast = BENCHMARKS[name]
    if importlib.util.find_spec(f"benchmarks.{name}") is None:
        print(f"== {name}: not in this checkout, skipped", flush=True)
        return True
    args = fast if quick and fast is not None else full
    print(f"== {name} {' '.join(args)}", flush=True)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args], cwd=REPO)
    print(f"== {name}: exit {done.returncode} after {time.monotonic() - start:.0f} s", flush=True)
    return done.returncode == 0


def regenerate() -> None:
    # Results next to the package too (benchmarks/NAME.json), as a benchmark may keep them there.
    loose = [json.loads(p.read_text()) for p in sorted((REPO / "benchmarks").glob("*.json"))]
    results = report.read_all() + [d for d in loose if isinstance(d, dict) and "figures" in d]
    text = table.render_table(results)
    if table.update_readme(README, text):
        print(f"updated the table in {README.name}")
    else:
        print(f"{README.name} has no benchmark markers; the table:\n{text}")
    bars = table.plot(results, PLOT)
    print(f"wrote {PLOT.relative_to(REPO)} ({bars} goals plotted)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true",
                        help="only the fast benchmarks, with small sizes")
    parser.add_argument("--table", action="store_true",
                        help="run nothing; regenerate the table and the plot from results/")
    args = parser.parse_args(argv)
    ok = True
    if not args.table:
        names = args.names or [n for n, (_, fast) in BENCHMARKS.items()
                               if not args.quick or fast is not None]
        for name in names:
            ok = run(name, args.quick) and ok
    regenerate()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
