"""Benchmark and stress test: repeated boots of a container-built Debian image's NFS root through
the appliance, for each NFS version the spec accepts.

    .venv/bin/python -m benchmarks.nfs_boots [--boots N] [--versions 3,4] [--image TAG] [--keep]

Builds the livenet example (Debian 12 from its Dockerfile) with one nfs entry per version, bakes
it into the appliance (`bootpack image`, cached by BOOTPACK_CACHE_DIR or ~/.cache/bootpack), serves
it on its own Docker bridge and PXE-boots a fresh VM (QEMU, TCG) N times in a row per version,
each to the example's systemd marker. A boot counts as stalled when it misses the marker within
--timeout, or its serial log shows a hung task, an NFS server not responding, an id-mapping
upcall or a failed mount. Prints seconds per boot, exits 1 when any boot stalled or failed.
--image TAG boots an appliance already baked from this benchmark's spec (see --keep).

Runs for about (build) + N x versions x 80-100 s on 2 cores; not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.livenet import MARKER, bake, livenet_spec, remove_image, served, stall_signs

TAG = "bp-bench-nfs-boots:latest"


def hosts(versions: list[int]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {f"nfs{v}": (f"52:54:00:a7:09:{v:02x}", {"root": "nfs", "nfs_version": v})
            for v in versions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nfs_boots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boots", type=int, default=5, help="boots in a row per version")
    parser.add_argument("--versions", default="3,4", help="NFS versions, comma-separated")
    parser.add_argument("--timeout", type=float, default=420, help="seconds to the marker")
    parser.add_argument("--image", help="an appliance image already baked from this spec")
    parser.add_argument("--keep", action="store_true", help="keep the baked appliance image")
    parser.add_argument("--logs", type=Path, help="keep serial logs in this folder")
    args = parser.parse_args(argv)
    versions = [int(v) for v in args.versions.split(",")]
    slot = 20 + os.getpid() % 200
    with tempfile.TemporaryDirectory(prefix="bp-nfs-boots-") as tmp:
        work = Path(tmp)
        logs = args.logs or work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        tag = args.image
        if tag is None:
            from bootpack.images.baseimage import ensure_debian_image

            ensure_debian_image()
            tag = TAG
            spec = livenet_spec(work, hosts(versions))
            print(f"built and baked {tag} in {bake(spec, tag):.0f} s", flush=True)
        results: dict[int, list[tuple[float, bool, list[str]]]] = {v: [] for v in versions}
        try:
            with served(tag, slot, "nfsboots") as serving:
                print(f"appliance healthy in {serving.healthy_seconds:.1f} s at {serving.address}")
                for version in versions:
                    mac = hosts([version])[f"nfs{version}"][0]
                    for n in range(1, args.boots + 1):
                        log_path = logs / f"nfs{version}-boot{n}.log"
                        boot = serving.boot(log_path, mac, timeout=args.timeout)
                        time.sleep(2)  # the failed-unit count follows the marker
                        text = log_path.read_text(errors="replace") if log_path.exists() else ""
                        signs = stall_signs(text)
                        ok = boot.found and f"{MARKER} failed=0" in text and not signs
                        results[version].append((boot.seconds, ok, signs))
                        state = "ok" if ok else "STALLED/FAILED"
                        print(f"NFSv{version} boot {n}/{args.boots}: {boot.seconds:6.1f} s to marker"
                              f" {state}{' ' + '; '.join(signs[:3]) if signs else ''}", flush=True)
        finally:
            if tag == TAG and not args.keep:
                remove_image(tag)
    print(f"\n{'version':>7} {'boots':>5} {'ok':>3} {'stalled':>7} {'min s':>6} {'median s':>8} "
          f"{'max s':>6}")
    failed = False
    for version, runs in results.items():
        seconds = [s for s, _ok, _signs in runs]
        good = sum(1 for _s, ok, _signs in runs if ok)
        failed |= good != len(runs) or not runs
        if seconds:
            print(f"{'NFSv' + str(version):>7} {len(runs):>5} {good:>3} {len(runs) - good:>7} "
                  f"{min(seconds):>6.1f} {statistics.median(seconds):>8.1f} {max(seconds):>6.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
