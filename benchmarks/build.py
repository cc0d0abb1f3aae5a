"""Benchmark: how build time grows with the number of hosts, and what the archive costs.

    .venv/bin/python -m benchmarks.build [HOSTS ...]

Prints seconds per phase (validate, render, full build) for clusters of each size, using Debian's
kernel and the marker initrd as artifacts. Numbers go in issue notes, not in assertions.
"""

from __future__ import annotations

import ipaddress
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

from bootpack.compiler import build_bundle
from bootpack.progress import SILENT
from bootpack.render import render_bundle_configs
from bootpack.spec import load_spec
from bootpack.spec.site import Site
from tests.support.marker import write_artifacts


def cluster(hosts: int) -> dict[str, object]:
    net = ipaddress.ip_network("10.0.0.0/16")
    return {
        "schema": 1,
        "bundle": {"name": "bench", "version": "1"},
        "server": {"address": "10.0.0.1"},
        "dhcp": {"mode": "server", "subnet": str(net), "range": ["10.0.250.1", "10.0.254.254"]},
        "images": {"k": {"kernel": "a/vmlinuz", "initrd": "a/initrd.img"}},
        "entries": [{"name": "e", "image": "k", "root": "ramdisk"}],
        "hosts": [{"name": f"n{i}", "mac": f"52:54:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:"
                   f"{i >> 8 & 255:02x}:{i & 255:02x}", "ip": str(net[i + 2]), "cmdline": f"node={i}"}
                  for i in range(hosts)],
    }


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_artifacts(root / "a")
        print(f"{'hosts':>6} {'validate s':>11} {'render s':>9} {'build s':>8}")
        for n in sizes:
            spec_path = root / f"spec{n}.toml"
            spec_path.write_text(tomli_w.dumps(cluster(n)))
            t0 = time.perf_counter()
            loaded = load_spec(spec_path)
            t1 = time.perf_counter()
            render_bundle_configs(loaded.spec, Site.from_spec(loaded.spec))
            t2 = time.perf_counter()
            build_bundle(loaded, root / f"out{n}", progress=SILENT)
            t3 = time.perf_counter()
            print(f"{n:>6} {t1 - t0:>11.3f} {t2 - t1:>9.3f} {t3 - t2:>8.3f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 64, 1000, 5000])
