"""A deterministic tar.gz of a bundle directory.

Same tree in, same bytes out, on any machine at any time: entries sorted, one fixed mtime
(SOURCE_DATE_EPOCH, default 0), owner 0, permission bits normalised, and a gzip header with
neither time nor file name. Root trees (roots/) are the exception to owner and mode: a booted
system needs its files' real numeric owners and modes, so those are kept as they are.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
from pathlib import Path

from ..files import walk
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
def write_archive(root: Path, target: Path, prefix: str, mtime: int | None = None) -> None:
    """Write root as a deterministic tar.gz at target, entries under `prefix/`."""
    mtime = source_date_epoch() if mtime is None else mtime
    root = Path(os.path.realpath(root))  # DIR is a link to its current version (see output.py)
    with target.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                  mtime=0, compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tarinfo(root, prefix, mtime))
        for path in walk(root):
            rel = path.relative_to(root).as_posix()
            if is_user_data(rel):  # per-host writable roots: never part of a bundle
                continue
            keep = rel.startswith(f"{ROOTS_DIR}/")
            info = _tarinfo(path, f"{prefix}/{rel}", mtime, keep_owner=keep)
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def extract_archive(archive: Path, target: Path) -> None:
    """Unpack an archive made by write_archive into target (its single top folder stripped)."""
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        if not members or not members[0].isdir():
            raise ValueError(f"{archive}: not a bootpack archive")
        prefix = members[0].name
        for m in members[1:]:
            m.name = m.name.removeprefix(prefix + "/")
        tar.extractall(target, members=members[1:], filter=_extract_filter)


def _extract_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's "tar" filter (nothing outside `dest`, no absolute links), but keep the archived
    modes: root trees need setuid, sticky and group-writable bits, which the filter would clear."""
    filtered = tarfile.tar_filter(member, dest)
    if filtered is not None:
        filtered = filtered.replace(mode=member.mode, deep=False)
    return filtered
