"""bundle.json: what a bundle is and every file in it, with sha256 and size."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from . import layout

FORMAT = 1


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def walk(root: Path) -> list[Path]:
    """Every file, symlink and directory under root, sorted by relative POSIX path."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        found.extend(base / d for d in dirnames)
        found.extend(base / f for f in filenames)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def list_files(root: Path) -> list[dict[str, Any]]:
    """Manifest rows for every regular file and symlink (bundle.json itself excluded)."""
    rows: list[dict[str, Any]] = []
    for path in walk(root):
        rel = path.relative_to(root).as_posix()
        if rel == layout.MANIFEST:
            continue
        if path.is_symlink():
            rows.append({"path": rel, "link": os.readlink(path)})
        elif path.is_file():
            rows.append({"path": rel, "sha256": _sha256(path), "size": path.stat().st_size})
    return rows


def bundle_digest(name: str, version: str, files: list[dict[str, Any]]) -> str:
    """One digest for the whole bundle: its identity and the digest of every file."""
    canonical = json.dumps({"name": name, "version": version, "files": files}, sort_keys=True,
                           separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def make_manifest(root: Path, *, name: str, version: str, description: str, spec_digest: str,
                  bootpack_version: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    files = list_files(root)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "description": description,
        "digest": bundle_digest(name, version, files),
        "spec_digest": spec_digest,
        "bootpack_version": bootpack_version,
    }
    manifest.update(extra or {})
    manifest["files"] = files
    return manifest


def dump(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False) + "\n"


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    from ..errors import BootpackError

    path = bundle_dir / layout.MANIFEST
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise BootpackError(f"{bundle_dir}: not a bootpack bundle (no {layout.MANIFEST}); "
                            "build one with `bootpack build SPEC --output DIR`") from None
    except (OSError, ValueError) as exc:
        raise BootpackError(f"{path}: unreadable manifest: {exc}") from None
    return data


def verify(bundle_dir: Path) -> list[str]:
    """Differences between a bundle directory and its manifest (empty when intact)."""
    manifest = read_manifest(bundle_dir)
    want = {row["path"]: row for row in manifest["files"]}
    have = {row["path"]: row for row in list_files(bundle_dir)}
    problems = [f"missing: {p}" for p in sorted(want.keys() - have.keys())]
    problems += [f"unexpected: {p}" for p in sorted(have.keys() - want.keys())]
    problems += [f"changed: {p}" for p in sorted(want.keys() & have.keys()) if want[p] != have[p]]
    return problems
