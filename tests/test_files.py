"""bootpack.files: the one sha256 helper and the one sorted walk."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from bootpack.files import Sha256, sha256_bytes, sha256_file, sha256_stream, walk


def test_digests_agree_with_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # more than one read block
    want = "sha256:" + hashlib.sha256(data).hexdigest()
    (tmp_path / "f").write_bytes(data)
    assert sha256_bytes(data) == want
    assert sha256_file(tmp_path / "f") == (want, len(data))
    assert sha256_stream(io.BytesIO(data)) == (want, len(data))
    h = Sha256()
    h.update(data[:10])
    h.update(data[10:])
    assert (h.digest, h.size) == (want, len(data))
    assert sha256_bytes(b"") == "sha256:" + hashlib.sha256(b"").hexdigest()


def test_walk_is_sorted_by_path_and_does_not_follow_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ("a/x", "a0", "a.txt", "b/c/d"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / "link").symlink_to("b")  # a symlinked folder: listed, not entered
    (tmp_path / "outside").mkdir()
    (root / "far").symlink_to(tmp_path / "outside")
    rels = [p.relative_to(root).as_posix() for p in walk(root)]
    assert rels == ["a", "a.txt", "a/x", "a0", "b", "b/c", "b/c/d", "far", "link"]
    assert walk(tmp_path / "empty-or-missing") == []
