"""A content-addressed store for build steps.

Each step's result lives in `<cache>/steps/<key>/`, where key = sha256 of the canonical JSON of
everything the step depends on (its name, its inputs' digests, its options and the bootpack
version). A step is built into a temporary folder next to the store and renamed into place only
when it succeeded, so an interrupted build never leaves a half-written entry; an entry that
exists is complete and reused as is. Two builds that need the same missing step (two terminals,
parallel test workers) take turns on a lock file per key, so the second reuses the first's result
instead of building it again. `bootpack cache prune` removes entries.

The cache lives in the user's cache folder (platformdirs: ~/.cache/bootpack on Linux), or in
$BOOTPACK_CACHE_DIR when set (tests use this).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..files import PREFIX, Sha256, sha256_bytes, sha256_file, walk

ENV = "BOOTPACK_CACHE_DIR"
STEPS = "steps"
DONE = ".bootpack-step.json"


def default_cache_dir() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("bootpack"))


def digest_json(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_bytes(canonical.encode()).removeprefix(PREFIX)


def digest_tree(root: Path) -> str:
    """sha256 over every path, kind, mode and content below root (for overlay folders)."""
    h = Sha256()
    for path in walk(root):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        h.update(f"{rel}\0{st.st_mode:o}\0".encode())
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            h.update(bytes.fromhex(sha256_file(path)[0].removeprefix(PREFIX)))
        h.update(b"\0")
    return h.digest.removeprefix(PREFIX)


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path
    hit: bool


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_cache_dir()).absolute()

    def key(self, step: str, inputs: dict[str, Any]) -> str:
        return digest_json({"step": step, "inputs": inputs, "bootpack": __version__})

    def path(self, key: str) -> Path:
        return self.root / STEPS / key

    def lookup(self, key: str) -> Path | None:
        path = self.path(key)
        if (path / DONE).is_file():
            os.utime(path / DONE)  # last use, for `prune --older-than`
            return path
        return None

    def get_or_build(self, step: str, inputs: dict[str, Any],
                     build: Callable[[Path], None]) -> Entry:
        """The cached result of `step` for `inputs`, building it into the store when absent."""
        key = self.key(step, inputs)
        found = self.lookup(key)
        if found is not None:
            return Entry(key, found, hit=True)
        steps = self.root / STEPS
        steps.mkdir(parents=True, exist_ok=True)
        with open(steps / f".{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even on a crash
            found = self.lookup(key)  # built by whoever held the lock before us
            if found is not None:
                return Entry(key, found, hit=True)
            return self._build(step, inputs, key, build)

    def _build(self, step: str, inputs: dict[str, Any], key: str,
               build: Callable[[Path], None]) -> Entry:
        steps = self.root / STEPS
        work = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", suffix=".tmp", dir=steps))
        try:
            build(work)
            (work / DONE).write_text(json.dumps({"step": step, "inputs": inputs,
                                                 "bootpack": __version__}, sort_keys=True,
                                                default=str, indent=1) + "\n")
            target = self.path(key)
            if target.exists():  # left by a bootpack without the lock: keep it
                shutil.rmtree(work, ignore_errors=True)
            else:
                os.rename(work, target)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        return Entry(key, self.path(key), hit=False)

    def entries(self) -> list[Path]:
        steps = self.root / STEPS
        if not steps.is_dir():
            return []
        return sorted(p for p in steps.iterdir() if p.is_dir())

    def prune(self, older_than_days: float | None = None) -> tuple[int, int]:
        """Remove entries (all, or those unused for that many days) and leftovers of interrupted
        builds. Returns (entries removed, bytes freed)."""
        now = time.time()
        removed = freed = 0
        for lock in (self.root / STEPS).glob(".*.lock") if (self.root / STEPS).is_dir() else ():
            with open(lock) as held:  # only locks nobody holds
                try:
                    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue
                lock.unlink(missing_ok=True)
        for path in self.entries():
            done = path / DONE
            if older_than_days is not None and done.is_file() and \
                    now - done.stat().st_mtime < older_than_days * 86400:
                continue
            freed += _size(path)
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        return removed, freed

    def size(self) -> int:
        return _size(self.root) if self.root.exists() else 0


def _size(root: Path) -> int:
    total = 0
    for path in walk(root):
        with contextlib.suppress(OSError):
            if not path.is_dir():
                total += path.lstat().st_size
    return total
