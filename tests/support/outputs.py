"""What a finished or interrupted build/pull may not leave next to its output."""

from __future__ import annotations

import os
from pathlib import Path


def leftovers(folder: Path) -> list[str]:
    """Hidden entries in folder, where an output's store (.OUT.bootpack) counts only for what it
    holds besides its lock, its `current` pointer, the version that points to and the tree pool
    (trees/), sorted."""
    found: list[str] = []
    for path in sorted(folder.iterdir()):
        if not path.name.startswith("."):
            continue
        if path.name.endswith(".bootpack") and path.is_dir() and not path.is_symlink():
            pointer = path / "current"
            current = os.readlink(pointer) if pointer.is_symlink() else None
            found += [f"{path.name}/{p.name}" for p in sorted(path.iterdir())
                      if p.name not in ("lock", "current", "trees", current)]
        else:
            found.append(path.name)
    return found
