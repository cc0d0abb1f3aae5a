"""A deterministic tar.gz of a bundle directory.

Same tree in, same bytes out, on any machine at any time: entries sorted, one fixed mtime
(SOURCE_DATE_EPOCH, default 0), owner 0, permission bits normalised, and a gzip header with
neither time nor file name. The gzip stream is cut into members (one per root tree, one per
big file, one per run of small files between them), each cached by its content: see
`write_archive`. Root trees (roots/) are the exception to owner and mode: a booted
system needs its files' real numeric owners and modes, so those are kept as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import stat
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..files import CHUNK, sha256_file, walk_rel
from .layout import ROOTS_DIR, is_user_data

EPOCH_MAX = 2**32 - 1  # the gzip header keeps file times in 32 bits


def source_date_epoch() -> int:
    from ..errors import BootpackError

    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    shown = value if len(value) <= 40 else f"{value[:20]}...({len(value)} characters)"
    if not value.strip().isascii() or not value.strip().isdigit():
        raise BootpackError(f"SOURCE_DATE_EPOCH={shown!r} is not a number of seconds since 1970 "
                            "(e.g. $(git log -1 --format=%ct))")
    if len(value.strip()) > 20 or int(value) > EPOCH_MAX:
        raise BootpackError(f"SOURCE_DATE_EPOCH={shown!r} is out of range: archive file times "
                            f"go from 0 to {EPOCH_MAX} (the year 2106)")
    return int(value)


def _normal_mode(mode: int) -> int:
    if stat.S_ISDIR(mode):
        return 0o755
    # Keep setuid/setgid/sticky and the executable bit (root trees need them); drop the rest.
    executable = mode & 0o111
    return (mode & 0o7000) | (0o755 if executable else 0o644)


def _tarinfo(path: Path, arcname: str, mtime: int, keep_owner: bool = False) -> tarfile.TarInfo:
    st = path.lstat()
    info = tarfile.TarInfo(arcname)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = _normal_mode(st.st_mode)
    if keep_owner:
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""  # numeric owners only: names mean nothing off the image
        info.mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        info.mode = 0o777
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    else:
        raise ValueError(f"{path}: cannot archive this kind of file")
    return info


# Level 1: most bytes are already compressed (zstd initrds, squashfs), so higher levels cost
# twice the time for about 4% less.
LEVEL = 1
BIG = 1 << 20  # a regular file this big gets a gzip member of its own (kernels, initrds, images)
_GZIP = 31  # zlib wbits for a gzip wrapper: no file name, mtime 0, fixed OS byte
# A big file whose samples (SAMPLE bytes at 1/4, 1/2 and 3/4 of it: a kernel's start is its
# compressible setup code) deflate to more than STORE_RATIO of their size is already compressed
# (zstd initrds and ramdisks, squashfs, bzImage kernels): its member is stored (deflate level 0),
# 10x faster than level 1 for about 1% more bytes. The choice depends only on the file's
# content, so the archive stays a function of the tree.
SAMPLE = 1 << 14
STORE_RATIO = 0.95
_MEMBER_FORMAT = b"bootpack archive member 2, gzip level 1, big incompressible files stored\n"


@dataclass(frozen=True)
class Member:
    """One gzip member of an archive: what it holds (key: sha256 of its tar headers and file
    digests), where its compressed bytes are, which `_group` it is (a root tree's is its path,
    e.g. roots/debian) and how many tar bytes it holds uncompressed (-1: not recorded)."""

    key: str
    offset: int
    length: int
    group: str = ""
    size: int = -1


@dataclass(frozen=True)
class _Item:
    path: Path
    rel: str
    info: tarfile.TarInfo
    header: bytes

    @property
    def tar_size(self) -> int:
        """Its bytes in the tar stream: header, data and padding to a whole block."""
        return len(self.header) + self.info.size + (-self.info.size % tarfile.BLOCKSIZE)


def _group(rel: str, info: tarfile.TarInfo) -> str:
    """Which member an entry goes in: a root tree is one member, a big file is one member, and
    the small files between them share one (a changed menu recompresses only those)."""
    if rel.startswith(f"{ROOTS_DIR}/"):
        return "/".join(rel.split("/")[:2])
    if info.isreg() and info.size >= BIG:
        return f"file:{rel}"
    return "small"


def _entries(root: Path, prefix: str, mtime: int, same: AbstractSet[str]) -> list[_Item]:
    """Tar entries of root, sorted; a folder in `same` stands alone for its whole tree (its
    member is copied from the earlier archive: nothing under it is read)."""
    items = [_Item(root, "", info := _tarinfo(root, prefix, mtime),
                   info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))]
    for rel in walk_rel(root, skip=same):
        if is_user_data(rel):  # per-host writable roots: never part of a bundle
            continue
        path = root / rel
        info = _tarinfo(path, f"{prefix}/{rel}", mtime, keep_owner=rel.startswith(f"{ROOTS_DIR}/"))
        items.append(_Item(path, rel, info,
                           info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")))
    return items


def _key(items: list[_Item], digests: Mapping[str, str]) -> str:
    h = hashlib.sha256(_MEMBER_FORMAT)
    for item in items:
        h.update(item.header)
        if item.info.isreg():
            digest = digests.get(item.rel) or sha256_file(item.path)[0]
            h.update(digest.encode() + b"\n")
    return "sha256:" + h.hexdigest()


def _level(item: _Item) -> int:
    """Deflate level for a big file's member: 0 (stored) when a sample shows it compressed."""
    with item.path.open("rb") as f:
        sample = b""
        for quarter in (1, 2, 3):
            f.seek(item.info.size * quarter // 4)
            sample += f.read(SAMPLE)
    packed = zlib.compress(sample, LEVEL)
    return 0 if len(packed) > STORE_RATIO * len(sample) else LEVEL


def _compress(items: list[_Item], out: BinaryIO,
              contents: Mapping[str, bytes] | None = None) -> int:
    """Write one gzip member holding these tar entries; its length. `contents`: bytes of files
    the caller has just written (path -> bytes), used instead of reading them back."""
    contents = contents or {}
    big = len(items) == 1 and items[0].info.isreg() and items[0].info.size >= BIG
    comp = zlib.compressobj(_level(items[0]) if big else LEVEL, zlib.DEFLATED, _GZIP)
    written = 0
    for item in items:
        written += out.write(comp.compress(item.header))
        known = contents.get(item.rel)
        if known is not None and item.info.isreg() and len(known) == item.info.size:
            written += out.write(comp.compress(known))
            written += out.write(comp.compress(b"\0" * (-item.info.size % tarfile.BLOCKSIZE)))
        elif item.info.isreg():
            left = item.info.size
            with item.path.open("rb") as f:
                while left and (block := f.read(min(left, CHUNK))):
                    written += out.write(comp.compress(block))
                    left -= len(block)
            if left:
                raise ValueError(f"{item.path}: changed size while being archived")
            written += out.write(comp.compress(b"\0" * (-item.info.size % tarfile.BLOCKSIZE)))
    return written + out.write(comp.flush())


def _copy_range(source: BinaryIO, out: BinaryIO, offset: int, length: int) -> None:
    """Copy bytes of an earlier archive in the kernel (no decompressing, no user-space copy)."""
    out.flush()
    src, dst, left = source.fileno(), out.fileno(), length
    try:
        while left:
            done = os.copy_file_range(src, dst, left, offset + length - left)
            if done == 0:
                raise OSError("short copy")
            left -= done
    except OSError:
        source.seek(offset + length - left)
        while left:
            block = source.read(min(left, CHUNK))
            if not block:
                raise ValueError("the earlier archive is shorter than its index") from None
            out.write(block)
            left -= len(block)
    out.seek(0, os.SEEK_END)


def write_archive(root: Path, target: Path, prefix: str, mtime: int | None = None, *,
                  digests: Mapping[str, str] | None = None,
                  earlier: tuple[Path, Sequence[Member]] | None = None,
                  same_trees: AbstractSet[str] = frozenset(),
                  contents: Mapping[str, bytes] | None = None) -> list[Member]:
    """Write root as a deterministic tar.gz at target, entries under `prefix/`; its members.

    The archive is a series of gzip members (a valid .tar.gz: gzip, tar and Python read
    concatenated members as one stream), cut where `_group` says. Each member depends only on
    its own entries, so a member of an `earlier` archive (path, its members) with the same key
    is copied as it is instead of compressed again: a changed menu title does not recompress a
    1 GB root tree. `digests` (path -> sha256, from the manifest) spares hashing for the keys.

    `same_trees`: root trees (e.g. roots/debian) the caller knows to be the very tree the
    earlier archive holds under the same prefix and mtime (the same inodes: output.py's tree
    pool). Their member is copied by its group without reading the tree (18,000 tar headers
    and a walk of 2,500 folders on the example: most of a config-only rebuild's time).
    `contents` (path -> bytes of files the caller has just written, e.g. 3,000 host configs)
    spares reading them back; a file whose size differs from its bytes is read."""
    mtime = source_date_epoch() if mtime is None else mtime
    digests = digests or {}
    root = Path(os.path.realpath(root))  # DIR is a link to its current version (see output.py)
    # Groups are recorded with the prefix: every header of a member holds it.
    by_group = {m.group: m for m in earlier[1] if m.size >= 0} if earlier else {}
    same = {g for g in same_trees if f"{prefix}/{g}" in by_group}
    items = _entries(root, prefix, mtime, same)
    runs = [list(run) for _, run in itertools.groupby(items, key=lambda i: _group(i.rel, i.info))]
    reusable = {m.key: m for m in earlier[1]} if earlier else {}
    members: list[Member] = []
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(target.open("wb"))
        source = stack.enter_context(earlier[0].open("rb")) if earlier and reusable else None
        offset = size = 0
        for run in runs:
            group = _group(run[0].rel, run[0].info)
            old: Member | None
            if group in same:  # one placeholder item stands for the tree: copy its member
                old = by_group[f"{prefix}/{group}"]
                assert source is not None
                key, tar_bytes = old.key, old.size
            else:
                key, tar_bytes = _key(run, digests), sum(i.tar_size for i in run)
                old = reusable.get(key)
            if old is not None and source is not None:
                _copy_range(source, out, old.offset, old.length)
                length = old.length
            else:
                length = _compress(run, out, contents)
            members.append(Member(key, offset, length, f"{prefix}/{group}", tar_bytes))
            offset += length
            size += tar_bytes
        # The end of a tar archive: two zero blocks, then zeros up to a whole record (as tarfile).
        end = 2 * tarfile.BLOCKSIZE
        end += -(size + end) % tarfile.RECORDSIZE
        comp = zlib.compressobj(LEVEL, zlib.DEFLATED, _GZIP)
        out.write(comp.compress(b"\0" * end) + comp.flush())
    return members


def extract_archive(archive: Path, target: Path) -> None:
    """Unpack an archive made by write_archive into target (its single top folder stripped)."""
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        if not members or not members[0].isdir():
            raise ValueError(f"{archive}: not a bootpack archive")
        prefix = members[0].name
        for m in members[1:]:
            m.name = m.name.removeprefix(prefix + "/")
        if hasattr(tarfile, "tar_filter"):
            tar.extractall(target, members=members[1:], filter=_extract_filter)
        else:  # Python < 3.11.4 (Debian 12's 3.11.2, the appliance image's): the same checks
            for m in members[1:]:
                _check_member(m, str(target))
            tar.extractall(target, members=members[1:])


def _check_member(member: tarfile.TarInfo, dest: str) -> None:
    """What tarfile's "tar" filter refuses (for Pythons without extraction filters): names
    outside dest, absolute names, links to absolute paths or outside dest, device files."""
    root = os.path.realpath(dest)
    name = os.path.normpath(os.path.join(root, member.name))
    if member.name.startswith("/") or os.path.commonpath([root, name]) != root:
        raise ValueError(f"{member.name}: outside the destination")
    if member.issym() or member.islnk():
        if member.linkname.startswith("/"):
            raise ValueError(f"{member.name}: link to an absolute path {member.linkname}")
        base = os.path.dirname(name) if member.issym() else root
        linked = os.path.normpath(os.path.join(base, member.linkname))
        if os.path.commonpath([root, linked]) != root:
            raise ValueError(f"{member.name}: link outside the destination ({member.linkname})")


def _extract_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's "tar" filter (nothing outside `dest`, no absolute links), but keep the archived
    modes: root trees need setuid, sticky and group-writable bits, which the filter would clear."""
    filtered = tarfile.tar_filter(member, dest)
    if filtered is not None:
        filtered = filtered.replace(mode=member.mode, deep=False)
    return filtered
