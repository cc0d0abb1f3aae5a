"""Benchmark: what `build -o OUT` pays to prove OUT holds nothing but its bundle before replacing it.

    .venv/bin/python -m benchmarks.replace_check [FILES [MB]]

Synthesises a bundle with a root tree of FILES files (default 10000) holding MB megabytes of
random bytes (default 300) through the real staged output, then times:
  - the replace check on the sealed bundle (lstat walk; nothing hashed),
  - the same check after a chmod of every file (ctimes newer than the seal: every same-size
    file hashed, as for a bundle from an older bootpack),
  - the check of the previous archive before an unchanged rebuild reuses it, against writing it.
Numbers go in issue notes, not in assertions.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from bootpack.bundle import layout
from bootpack.bundle.archive import write_archive
from bootpack.bundle.manifest import make_manifest
from bootpack.bundle.output import check_replaceable, staged_output
from bootpack.bundle.verify import archive_manifest


def timed(what: str, action: object) -> float:
    start = time.perf_counter()
    assert callable(action)
    action()
    elapsed = time.perf_counter() - start
    print(f"{what:<58} {elapsed:7.2f} s")
    return elapsed


def synthesize(out: Path, files: int, mb: int) -> None:
    size = mb * 1_000_000 // files
    with staged_output(out) as staging:
        for i in range(files):
            path = staging / layout.ROOTS_DIR / "img" / f"d{i // 100:03d}" / f"f{i:05d}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(size))
        manifest = make_manifest(staging, name="big", version="1", description="", spec_digest="x",
                                 bootpack_version="bench")
        (staging / layout.MANIFEST).write_text(manifest.dumps())
        for path in [staging, *staging.rglob("*")]:
            os.utime(path, (0, 0), follow_symlinks=False)
        write_archive(staging, layout.archive_path(staging), "big-1", 0)


def main(argv: list[str]) -> None:
    files = int(argv[0]) if argv else 10_000
    mb = int(argv[1]) if len(argv) > 1 else 300
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        out = Path(tmp) / "out"
        print(f"bundle: {files} files, {mb} MB in roots/img")
        timed("synthesize + manifest + archive (once)", lambda: synthesize(out, files, mb))
        timed("replace check, sealed bundle (lstat walk only)", lambda: check_replaceable(out))
        for path in out.resolve().rglob("*"):
            if path.is_file():
                path.chmod(0o644)
        timed("replace check, every ctime newer (hash all files)", lambda: check_replaceable(out))
        archive = layout.archive_path(out)
        timed("unchanged rebuild: check the previous archive", lambda: archive_manifest(archive))
        again = Path(tmp) / "again.tar.gz"
        timed("changed rebuild: write the archive", lambda: write_archive(out, again, "big-1", 0))


if __name__ == "__main__":
    main(sys.argv[1:])
