"""Boot variants of a bundle that `benchmarks.boot_speed --work DIR` built: the same boot, with
files swapped or kernel command-line words added, to measure one choice at a time.

    .venv/bin/python -m benchmarks.boot_variants --work DIR --name lz4 [--entry live]
        [--file images/debian/squashfs.img=PATH ...] [--append "WORDS"] [--repeat N]
    .venv/bin/python -m benchmarks.boot_variants --work DIR --summary

A variant is a hard-linked copy of DIR/out/tftpboot (the bundle stays untouched) with each
--file replacing that path and --append put at the front of the entry's command line in the
benchmark host's pxelinux config and iPXE script. It boots exactly as boot_speed boots bootpack's tree (same
QEMU, same HTTP server on the bundle's port, same phases) and appends one line per boot to
DIR/variants.jsonl; --summary prints the medians per variant name.

Boots on this 2-core machine scatter by +-3 s in a phase even when it is quiet: interleave the
variants (a, b, a, b, ...) and compare medians of several boots, never two single boots.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks import boot_speed


def variant_tree(work: Path, name: str, entry: str, files: list[str], append: str) -> Path:
    root = work / "variants" / name
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(work / "out" / "tftpboot"), str(root)], check=True)
    for item in files:
        rel, _, source = item.partition("=")
        target = root / rel
        if not source or not Path(source).is_file() or not target.is_file():
            raise SystemExit(f"--file {item}: give BUNDLE_PATH=FILE, both existing files")
        target.unlink()  # a hard link into the bundle: never write through it
        shutil.copyfile(source, target)
    mac = boot_speed.MACS[entry].replace(":", "-")
    # the words go first on the command line: after APPEND, before iPXE's initrd=NAME
    for config, word in ((root / "pxelinux.cfg" / f"01-{mac}", "  APPEND "),
                         (root / "ipxe" / "hosts" / f"{mac}.ipxe", " initrd=")):
        if config.is_file() and append:
            text = config.read_text()
            config.unlink()  # a hard link into the bundle: never write through it
            config.write_text(text.replace(word, f"{word.rstrip()} {append} "
                                           if word.startswith("  ") else f" {append}{word}", 1))
    return root


def summary(work: Path) -> None:
    rows = [json.loads(line) for line in (work / "variants.jsonl").read_text().splitlines()]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[f"{row['name']} ({row['entry']})"].append(row)
    for name, runs in groups.items():
        totals = [float(r["total"]) for r in runs if r["total"] is not None]
        phases: dict[str, list[float]] = defaultdict(list)
        for r in runs:
            for phase, seconds in r["phases"].items():
                phases[phase].append(seconds)
        detail = ", ".join(f"{p} {statistics.median(v):.1f}" for p, v in phases.items()
                           if p != "first DHCP")
        median = f"{statistics.median(totals):.1f} s" if totals else "no marker"
        print(f"{name}: {len(runs)} boots, median {median} ({detail}); totals "
              f"{', '.join(f'{t:.1f}' for t in totals)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.boot_variants", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="a boot_speed --work folder")
    parser.add_argument("--name", help="the variant's name (reported and grouped by)")
    parser.add_argument("--entry", default="live", choices=sorted(boot_speed.MACS))
    parser.add_argument("--file", action="append", default=[], metavar="PATH=FILE",
                        help="replace the bundle's tftpboot/PATH by FILE")
    parser.add_argument("--append", default="", help="words put at the front of APPEND")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to the marker")
    parser.add_argument("--summary", action="store_true", help="print medians per variant")
    args = parser.parse_args(argv)
    if args.summary:
        summary(args.work)
        return 0
    if not args.name:
        parser.error("--name is needed to boot a variant")
    if not (args.work / "ports.json").is_file() or not (args.work / "out").is_dir():
        raise SystemExit(f"{args.work}: run `python -m benchmarks.boot_speed --work "
                         f"{args.work}` first: variants are copies of its bundle")
    if os.geteuid() != 0:
        raise SystemExit("needs root (the bundle's files are root's)")
    port = json.loads((args.work / "ports.json").read_text())["bootpack"]
    root = variant_tree(args.work, args.name, args.entry, args.file, args.append)
    bootfile = boot_speed.ipxe_rom_bootfile(args.work / "out")
    logs = args.work / "logs"
    logs.mkdir(exist_ok=True)
    failed = False
    with boot_speed.http_server(root, port) as requests, \
            (args.work / "variants.jsonl").open("a") as out:
        for _ in range(args.repeat):
            run = boot_speed.boot(root, bootfile, boot_speed.MACS[args.entry],
                                  args.name, args.entry, requests, logs, args.timeout)
            print(run.summary(), flush=True)
            failed |= run.total is None
            out.write(json.dumps({"name": args.name, "entry": args.entry, "total": run.total,
                                  "phases": run.phases, "time": time.time()}) + "\n")
            out.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
