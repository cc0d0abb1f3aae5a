"""Atomic output: a bundle directory and its archive, replaced together by one rename(2).

For `--output OUT`, the bundle lives in a hidden folder next to OUT, one sub-folder per version,
and two symbolic links that never change make the documented paths work:

    OUT          -> .OUT.bootpack/current/OUT
    OUT.tar.gz   -> .OUT.bootpack/current/OUT.tar.gz
    .OUT.bootpack/
        lock               flock(2)ed by the build or pull writing OUT, for its whole write
        current -> v-XXXX  the only name a swap changes: rename(2) of a new symlink over it
        v-XXXX/OUT/        the bundle directory
        v-XXXX/OUT.tar.gz  its archive
        v-XXXX/seal.json   when the version was finished (see `_Seal`)
        v-XXXX/archive.json the archive's gzip members and its stamp (see `record_archive`)
        v-XXXX/sources.json digests of the build's source files by stat (compiler.SourceDigests)
        hosts/             per-host writable roots found in a bundle; OUT/hosts links here
        trees/roots/NAME/  the tree pool: a spare copy of each root tree (see below)

A build or pull stages a complete new version (tree, bundle.json and archive) as v-YYYY, then
flips `current`. Whenever a build is killed, OUT and OUT.tar.gz are both the old bundle or both
the new one: never a mix, never missing. The old version is removed after the flip; whatever
an interrupted build leaves behind (a half-written v-YYYY, an old version) is removed by the next
build or pull of OUT, under the lock. Nothing is ever replaced that bootpack did not write: OUT
must be absent, an empty folder, or a bundle whose files are exactly what its bundle.json lists.

The tree pool spares a rebuild the root trees' 2,500 folders: creating them costs ~0.3 ms each
and removing them ~1.5 ms each on this machine's ext4 (mounted with discard), seconds either way.
A spare of each root tree, hard links to the same inodes as the current version's, waits in
trees/. A rebuild whose image did not change moves the spare into its staging version with one
rename(2) (`recycle_tree`), once a scandir walk has shown it is still exactly the current tree
(same names, same inodes, same folder modes, owners and times); after the swap the replaced
version's tree becomes the next spare, again by one rename, instead of being deleted. Nothing
in a tree is written or unlinked, so the files' ctimes, and with them the seal, stay valid.
A new tree is hard-linked into the pool once, when it is first built (`stock_slot`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BootpackError
from ..progress import Progress
from . import layout
from .archive import Member
from .layout import archive_path

if TYPE_CHECKING:
    from .manifest import BundleManifest

__all__ = ["Previous", "archive_path", "check_inputs", "check_replaceable", "fix_modes",
           "interrupted_note", "previous", "record_archive", "recycle_tree", "share_tree",
           "shared_trees", "source_memo", "staged_output", "stock_slot", "store_dir"]

STORE_SUFFIX = ".bootpack"
CURRENT = "current"
LOCK = "lock"
SEAL = "seal.json"
ARCHIVE_INDEX = "archive.json"
SOURCES = "sources.json"  # the archive's gzip members, for the next build to reuse
POOL = "trees"  # spare root trees (see the module docstring)
VERSION_PREFIX = "v-"
PAUSE_ENV = "BOOTPACK_TEST_PAUSE"  # tests only: stop at a named point (see _pause)
SHOWN = 5  # problems named in a refusal

# Names at the top of a bundle directory, to recognise leftovers of older bootpack versions.
_BUNDLE_TOP = {layout.TFTP_DIR, layout.ETC_DIR, layout.ROOTS_DIR, layout.MANIFEST, layout.SPEC,
               layout.HOSTS_DIR}


def store_dir(output: Path) -> Path:
    """The hidden folder next to OUT that holds its versions, lock and carried-over host roots."""
    return output.with_name(f".{output.name}{STORE_SUFFIX}")


def _link_target(output: Path) -> str:
    return f".{output.name}{STORE_SUFFIX}/{CURRENT}/{output.name}"


def _archive_target(output: Path) -> str:
    return _link_target(output) + ".tar.gz"


# --- What happened, for the message after Ctrl-C -------------------------------------------------

_outputs: dict[Path, bool] = {}  # output -> True once the new bundle was swapped in


def interrupted_note() -> str | None:
    """What an interrupt left behind, true to the moment it came (None: no output involved)."""
    if not _outputs:
        return None
    notes = []
    for output, swapped in _outputs.items():
        if swapped:
            notes.append(f"{output} and {archive_path(output).name} already hold the new bundle")
        else:
            notes.append(f"{output} and {archive_path(output).name} were left as they were")
    return "; ".join(notes)


def watch(output: Path) -> None:
    """Note that this process is about to write output (for `interrupted_note`)."""
    _outputs[output.absolute()] = False


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold SIGINT (and SIGTERM/SIGHUP) off a few syscalls, so that an interrupt lands before
    or after a change and its bookkeeping, never between them; delivered right after."""
    mask = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _Resume(Exception):
    pass


def _resume(signum: int, frame: object) -> None:
    raise _Resume


def _pause(point: str) -> None:
    """For tests only: with BOOTPACK_TEST_PAUSE=POINT, say so on stderr and wait, so a test can
    kill (SIGKILL), interrupt (SIGINT) or resume (SIGUSR1) a real build at exactly that point."""
    if os.environ.get(PAUSE_ENV) != point:
        return
    previous = signal.signal(signal.SIGUSR1, _resume)
    try:
        print(f"bootpack-test: paused at {point} (pid {os.getpid()})", file=sys.stderr, flush=True)
        time.sleep(600)
    except _Resume:
        pass
    finally:
        signal.signal(signal.SIGUSR1, previous)


# --- The seal: skipping re-hashes safely ----------------------------------------------------------

@dataclass(frozen=True)
class _Seal:
    """When a version was finished: the mtime bootpack gave every file (SOURCE_DATE_EPOCH, also
    in pulled bundles: the archive's) and the newest ctime in the tree once it was complete.

    A file whose size is as listed, whose mtime is that one and whose ctime is not newer than
    the seal has not been written since: every write, truncate, rename over it, chmod or utime
    sets ctime to the current time, and nothing lets a user set ctime back. `_wait_past` makes
    sure the clock has moved past the seal before the version is published, so a change
    right after the swap cannot share its timestamp. What slips through needs both a forged
    mtime (touch -d) and a clock stepped back behind the build; for anything else not vouched for,
    the file is hashed. Bundles without a seal (from older bootpack versions) are fully hashed.
    """

    mtime_ns: int
    ctime_ns: int

    def vouches(self, st: os.stat_result) -> bool:
        return st.st_mtime_ns == self.mtime_ns and st.st_ctime_ns <= self.ctime_ns

    @classmethod
    def read(cls, version: Path) -> _Seal | None:
        try:
            data = json.loads((version / SEAL).read_text())
            return cls(int(data["mtime_ns"]), int(data["ctime_ns"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def make(cls, tree: Path, skip: AbstractSet[str] = frozenset(), floor: int = 0) -> _Seal:
        """`skip`: root trees whose files no one wrote since an earlier seal vouched for them
        (recycled from the pool); `floor`: a ctime the seal must not go below."""
        newest = max(floor, tree.lstat().st_ctime_ns)
        start = len(os.fspath(tree)) + 1
        for dirpath, dirnames, filenames in os.walk(tree):
            if Path(dirpath) == tree and layout.HOSTS_DIR in dirnames:
                dirnames.remove(layout.HOSTS_DIR)
            for name in dirnames + filenames:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_ctime_ns)
            if skip:
                rel = dirpath[start:]
                dirnames[:] = [d for d in dirnames if f"{rel}/{d}" not in skip]
        manifest = tree / layout.MANIFEST
        mtime = manifest.lstat().st_mtime_ns if manifest.exists() else -1
        return cls(mtime, newest)

    def write(self, version: Path) -> None:
        target = version / SEAL
        target.write_text(json.dumps({"mtime_ns": self.mtime_ns, "ctime_ns": self.ctime_ns}) + "\n")
        target.chmod(0o644)


_COARSE = getattr(time, "CLOCK_REALTIME_COARSE", 5)  # the clock file systems stamp ctime from


def _wait_past(ns: int) -> None:
    """Wait (a few ms at most) until ctimes stamped from now on are later than `ns`."""
    deadline = time.monotonic() + 1
    while time.clock_gettime_ns(_COARSE) <= ns and time.time_ns() <= ns + 50_000_000:
        if time.monotonic() > deadline:
            break
        time.sleep(0.001)


# --- What the previous version offers a rebuild ---------------------------------------------------

@dataclass(frozen=True)
class Previous:
    """The current version of OUT, as a build about to replace it sees it (under the lock): files
    its seal vouches for may be hard-linked into the new version instead of copied and hashed,
    and gzip members of its archive copied instead of compressed again."""

    tree: Path
    manifest: BundleManifest
    seal: _Seal
    archive: Path | None  # None: no archive, or one whose stamp does not vouch for it
    members: tuple[Member, ...]
    note: str = ""  # why an archive that is there is not reused

    def all_unchanged(self, files: Iterable[tuple[str, int]]) -> bool:
        """`unchanged` for every (path, size) (strings, not Paths: 15,000 files of a tree).
        The check under the lock (`_check_tree`) has just stat'ed them all: its answer is used."""
        vouched = _vouched.get(os.path.realpath(self.tree))
        if vouched is not None:
            return all(rel in vouched for rel, _ in files)  # sizes: checked against the rows
        base = os.fspath(self.tree)
        for rel, size in files:
            try:
                st = os.lstat(os.path.join(base, rel))
            except OSError:
                return False
            if not (stat.S_ISREG(st.st_mode) and st.st_size == size and self.seal.vouches(st)):
                return False
        return True

    def unchanged(self, rel: str, size: int) -> Path | None:
        """The previous version's file at `rel` when it is still what its manifest lists (a
        regular file of that size, untouched since the seal), else None."""
        path = self.tree / rel
        try:
            st = path.lstat()
        except OSError:
            return None
        ok = stat.S_ISREG(st.st_mode) and st.st_size == size and self.seal.vouches(st)
        return path if ok else None


def previous(output: Path) -> Previous | None:
    """The current version of OUT with a readable manifest and a seal, or None. Call it while
    holding the output's lock (inside `staged_output`)."""
    from .manifest import BundleManifest

    output = output.absolute()
    version = _version_of(store_dir(output))
    if version is None:
        return None
    seal = _Seal.read(version)
    tree = version / output.name
    try:
        manifest = BundleManifest.read(tree / layout.MANIFEST, str(tree))
    except (OSError, BootpackError):
        return None
    if seal is None:
        return None
    archive: Path | None = archive_path(tree)
    members: tuple[Member, ...] = ()
    note = ""
    try:
        index = json.loads((version / ARCHIVE_INDEX).read_text())
        st = archive.lstat() if archive else None
        if st is None or not (stat.S_ISREG(st.st_mode) and st.st_size == index["size"]
                              and st.st_mtime_ns == index["mtime_ns"]
                              and st.st_ctime_ns <= index["ctime_ns"]):
            note = (f"{archive_path(output)} was changed after bootpack wrote it; writing the "
                    "archive again in full")
            raise ValueError(note)
        members = tuple(Member(str(m["key"]), int(m["offset"]), int(m["length"]),
                               str(m.get("group", "")), int(m.get("size", -1)))
                        for m in index["members"])
    except (OSError, ValueError, KeyError, TypeError):
        archive = None
    return Previous(tree, manifest, seal, archive, members, note)


def source_memo(staging: Path) -> Path:
    """Where a version remembers its build's source file digests (compiler.SourceDigests)."""
    return staging.parent / SOURCES


def record_archive(staging: Path, members: list[Member] | tuple[Member, ...]) -> None:
    """Write the index of the staged archive next to it, stamped like the seal (size, mtime,
    ctime): the next build trusts the members only while nothing has written the archive."""
    archive = archive_path(staging)
    if stat.S_IMODE(archive.stat().st_mode) != 0o644:
        archive.chmod(0o644)  # before the stamp: _commit then leaves it alone
    st = archive.stat()
    _wait_past(st.st_ctime_ns)  # a write right after this cannot share the stamp's ctime
    target = staging.parent / ARCHIVE_INDEX
    target.write_text(json.dumps({
        "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
        "members": [{"key": m.key, "offset": m.offset, "length": m.length, "group": m.group,
                     "size": m.size} for m in members],
    }) + "\n")
    target.chmod(0o644)


# --- The tree pool ----------------------------------------------------------------------------------

# staging folder -> its root trees that are the current version's (same inodes), by path
# (e.g. roots/debian) -> True when recycled from the pool (no inode touched: no re-seal needed)
_shared: dict[Path, dict[str, bool]] = {}
_stocked: dict[Path, set[str]] = {}  # staging folder -> trees it gave the pool a spare of


def _slot(store: Path, rel: str) -> Path:
    return store / POOL / rel


def share_tree(staging: Path, rel: str, recycled: bool = False) -> None:
    """Note that the staged tree at `rel` is the current version's (hard links to its inodes):
    after the swap, the replaced version's copy becomes the pool's spare instead of deleted."""
    _shared.setdefault(staging, {})[rel] = recycled


def shared_trees(staging: Path) -> dict[str, bool]:
    """The staged root trees that are the current version's (rel -> recycled from the pool)."""
    return dict(_shared.get(staging, {}))


def recycle_tree(before: Previous, staging: Path, rel: str) -> bool:
    """Move the pool's spare of `rel` into staging when it is exactly the current version's tree
    at `rel` (which the caller has checked against its manifest and seal); False otherwise (a
    spare that is not is removed: it can never be used)."""
    slot = _slot(staging.parent.parent, rel)
    if slot.is_symlink() or not slot.is_dir():
        return False
    if not _same_tree(slot, before.tree / rel):
        shutil.rmtree(slot, ignore_errors=True)
        return False
    target = staging / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(slot, target)
    share_tree(staging, rel, recycled=True)
    return True


def stock_slot(staging: Path, rel: str) -> Path:
    """An empty place in the pool for a spare of the newly built tree `rel` (the caller
    hard-links the staged tree there, before the seal: linking changes the files' ctimes)."""
    slot = _slot(staging.parent.parent, rel)
    if slot.is_symlink() or slot.is_file():
        slot.unlink()
    elif slot.exists():
        shutil.rmtree(slot, ignore_errors=True)
    slot.parent.mkdir(parents=True, exist_ok=True)
    _stocked.setdefault(staging, set()).add(rel)
    return slot


def _same_tree(a: Path, b: Path) -> bool:
    """Are two trees the same names with the same inodes (files, links, device nodes) and
    folders of the same mode, owner and mtime? One scandir per folder, inode numbers from
    readdir: about 0.1 s for a 15,000-file tree, against seconds to copy or remove it."""
    def attrs(path: str) -> tuple[int, int, int, int, int]:
        st = os.lstat(path)
        return st.st_dev, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns

    stack = [(os.fspath(a), os.fspath(b))]
    try:
        while stack:
            x, y = stack.pop()
            mine = attrs(x)
            if mine != attrs(y) or not stat.S_ISDIR(mine[1]):
                return False
            with os.scandir(x) as found:
                here = {e.name: e for e in found}
            with os.scandir(y) as found:
                there = {e.name: e for e in found}
            if here.keys() != there.keys():
                return False
            for name, e in here.items():
                f = there[name]
                if e.is_dir(follow_symlinks=False) or f.is_dir(follow_symlinks=False):
                    stack.append((e.path, f.path))
                elif e.inode() != f.inode():
                    return False
    except OSError:
        return False
    return True


def _to_pool(tree: Path, store: Path, rels: AbstractSet[str] | None = None) -> set[str]:
    """Move root trees of a version that is going away into free pool slots (all of its trees,
    or those in `rels`); the ones moved. A tree that is not what its slot needs is found out
    by `recycle_tree` before use."""
    moved: set[str] = set()
    roots = tree / layout.ROOTS_DIR
    if tree.is_symlink() or roots.is_symlink():  # never follow a link out of the version
        return moved
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(roots), key=lambda e: e.name):
            rel = f"{layout.ROOTS_DIR}/{entry.name}"
            slot = _slot(store, rel)
            if (rels is None or rel in rels) and entry.is_dir(follow_symlinks=False) \
                    and not (slot.exists() or slot.is_symlink()):
                slot.parent.mkdir(parents=True, exist_ok=True)
                os.rename(entry.path, slot)
                moved.add(rel)
    return moved


def _prune_pool(store: Path, keep: AbstractSet[str]) -> None:
    """Remove spares of trees the current version does not have (or has anew)."""
    roots = store / POOL / layout.ROOTS_DIR
    with contextlib.suppress(OSError):
        for entry in os.scandir(roots):
            if f"{layout.ROOTS_DIR}/{entry.name}" not in keep:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)


# --- What is at OUT now, and may it be replaced ----------------------------------------------------

@dataclass(frozen=True)
class _Current:
    tree: Path | None  # the bundle folder a replace removes (None: nothing to check)
    legacy: bool  # OUT is a plain folder (bootpack before versioned outputs, or empty)
    seal: _Seal | None


def _refuse(output: Path, why: str, todo: str) -> BootpackError:
    return BootpackError(f"--output {output}: {why}; {todo}")


def _current(output: Path) -> _Current:
    """What OUT and OUT.tar.gz are now; refuses anything bootpack did not make."""
    archive = archive_path(output)
    todo = "choose another --output, or move it away"
    if output.is_symlink():
        target = os.readlink(output)
        if target != _link_target(output):
            raise _refuse(output, f"is a symbolic link to {target}, not one bootpack made",
                          "give the folder's own path, or remove the link")
        tree = output.resolve() if output.is_dir() else None
        current = _Current(tree, False, _Seal.read(tree.parent) if tree else None)
    elif output.is_dir():
        empty = not any(output.iterdir())
        current = _Current(None if empty else output, True, None)
    elif output.exists():
        raise _refuse(output, "exists and is not a directory", todo)
    else:
        current = _Current(None, False, None)
    if archive.is_symlink():
        target = os.readlink(archive)
        if target != _archive_target(output):
            raise _refuse(output, f"{archive} is a symbolic link to {target}, not one bootpack "
                          "made, and would be replaced", todo)
    elif archive.exists():
        if not archive.is_file():
            raise _refuse(output, f"{archive} exists and is not a file", todo)
        _check_archive_is_bootpacks(output, archive)
    return current


def _check_archive_is_bootpacks(output: Path, archive: Path) -> None:
    """An existing plain OUT.tar.gz is replaced only when bootpack wrote it: its entries are
    sorted, so bundle.json is among the first two after the top folder (cheap to check)."""
    from .manifest import BundleManifest

    why = f"{archive} exists and is not a bootpack archive, and would be overwritten"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            top = tar.next()
            for _ in range(3):
                member = tar.next()
                if top is None or member is None:
                    break
                if member.name == f"{top.name}/{layout.MANIFEST}" and member.isreg():
                    f = tar.extractfile(member)
                    assert f is not None
                    BundleManifest.loads(f.read(), str(archive))
                    return
    except (OSError, tarfile.TarError, EOFError, BootpackError):
        pass
    raise _refuse(output, why, "move it away or choose another --output")


# The current tree (real path) -> its files the check under the lock found present and vouched
# for by the seal; `Previous.all_unchanged` answers from it instead of stat'ing them again.
_vouched: dict[str, set[str]] = {}
_digest_checked: list[BundleManifest] = []  # manifests whose digest was seen to add up


def _check_tree(output: Path, current: _Current, trees: bool = True) -> None:
    """Refuse a current bundle with files that are not its own. `trees=False` skips the root
    trees (for the early check before image building; the check under the lock has them)."""
    from .manifest import BundleManifest
    from .verify import user_changes

    tree = current.tree
    if tree is None:
        return
    if not (tree / layout.MANIFEST).is_file():
        raise _refuse(output, f"exists, is not empty and is not a bootpack bundle (no "
                      f"{layout.MANIFEST})", "choose another path, or move its files away")
    try:
        manifest = BundleManifest.read(tree / layout.MANIFEST, f"{output}/{layout.MANIFEST}")
    except BootpackError as exc:
        raise _refuse(output, f"is not a bootpack bundle ({exc})",
                      "choose another path, or move its files away") from None
    problems = []
    if not any(m is manifest for m in _digest_checked):
        if manifest.computed_digest() != manifest.digest:
            problems.append(f"changed: {layout.MANIFEST} (its digest does not add up)")
        else:
            _digest_checked[:] = [manifest]  # held here: `is` stays meaningful
    vouched: set[str] = set()
    problems += user_changes(tree, manifest, current.seal.vouches if current.seal else _never,
                             skip=set() if trees else {layout.ROOTS_DIR}, vouched=vouched)
    _vouched.clear()
    if trees and not problems:
        _vouched[os.path.realpath(tree)] = vouched
    if problems:
        more = f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise _refuse(output, "holds files that are not the bundle's own, which replacing it "
                      f"would delete: {', '.join(problems[:SHOWN])}{more}",
                      "move them out of the folder (or remove it yourself) and run again")


def check_replaceable(output: Path, trees: bool = True) -> None:
    """Refuse to replace anything but nothing, an empty folder, or an untouched bundle (without
    its root trees when `trees` is False: a quick early check; staging checks them all)."""
    output = output.absolute()
    current = _current(output)
    try:
        _check_tree(output, current, trees)
    except (OSError, BootpackError):
        # Not under the lock: another build may have swapped OUT and removed the version read
        # here mid-walk. That is no refusal; the check under the lock sees the new version.
        if current.legacy or current.tree is None or output.resolve() == current.tree:
            raise


def _never(st: os.stat_result) -> bool:
    return False


def check_inputs(output: Path, inputs: Mapping[str, Path]) -> None:
    """Refuse an output whose replacement would delete an input of the build (`inputs`: what
    -> path, e.g. "the spec" -> site.toml), or that lies inside an input folder (the bundle
    would end up in the next build's root tree). Symlinks are followed both ways: a link that
    is an input counts where it is (it is deleted with its folder) and where it points."""
    output = output.absolute()
    archive = archive_path(output)

    def real(path: Path) -> Path:
        return Path(os.path.realpath(path))

    def spot(path: Path) -> Path:  # where a name itself is: its folder resolved, not itself
        return real(path.parent) / path.name

    doomed = {spot(output), real(output), spot(archive), real(archive)}
    for what, given in inputs.items():
        path = given.absolute()
        for candidate in (spot(path), real(path)):
            for gone in doomed:
                if candidate == gone or gone in candidate.parents:
                    where = Path(archive.name if gone in (spot(archive), real(archive))
                                 else output.name) / candidate.relative_to(gone)
                    raise _refuse(output, f"replacing it would delete {what} ({where}), an input "
                                  "of this build", "build into a folder that holds none of the "
                                  "inputs, e.g. out/ next to the spec, not the spec's own folder")
        if path.is_dir():
            inside = real(path)
            if spot(output) == inside or inside in spot(output).parents:
                raise _refuse(output, f"is inside {what} ({given}), so the bundle would be copied "
                              "into the next build", "build into a folder outside it")


# --- Staging and swapping ------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(store: Path, output: Path, progress: Progress | None) -> Iterator[None]:
    """flock(2) on .OUT.bootpack/lock: one build or pull writes OUT at a time; a second waits.
    The kernel drops the lock when its holder dies, so a killed build never blocks the next."""
    fd = os.open(store / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            message = f"{output}: another bootpack (pid {holder}) is writing it; waiting for it"
            if progress is not None:
                progress.warn(message)
            else:
                print(f"warning: {message}", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_link(target: str, where: Path) -> None:
    """Make `where` a symlink to `target` with one rename(2) (atomic, also over a file)."""
    tmp = where.with_name(f".{where.name}.{os.urandom(4).hex()}.link")
    os.symlink(target, tmp)
    try:
        os.rename(tmp, where)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _ensure_links(output: Path) -> None:
    for where, target in ((output, _link_target(output)),
                          (archive_path(output), _archive_target(output))):
        if not (where.is_symlink() and os.readlink(where) == target):
            _replace_link(target, where)


def _version_of(store: Path) -> Path | None:
    try:
        return store / os.readlink(store / CURRENT)
    except OSError:
        return None


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(RENAME_EXCHANGE): swap two names in one step. False where unsupported."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _adopt(output: Path, store: Path) -> None:
    """Turn a plain OUT folder (and plain OUT.tar.gz) from an older bootpack into the versioned
    layout without a moment where either path is missing or mixed: the folder moves into a
    version by renameat2(RENAME_EXCHANGE) with the link that will resolve to it."""
    if not any(output.iterdir()):
        output.rmdir()  # an empty folder: nothing to keep (the links appear with the new bundle)
        return
    version = Path(tempfile.mkdtemp(prefix=VERSION_PREFIX, dir=store))
    version.chmod(0o755)
    archive = archive_path(output)
    if archive.is_file() and not archive.is_symlink():
        kept = archive_path(version / output.name)
        try:
            os.link(archive, kept)  # the same bytes under both names: nothing to copy
        except OSError:
            shutil.copy2(archive, kept)
    placeholder = version / output.name
    os.symlink(_link_target(output), placeholder)  # resolves once it stands where OUT is
    with _signals_blocked():
        _replace_link(version.name, store / CURRENT)
        if not _exchange(placeholder, output):
            # No RENAME_EXCHANGE on this file system (NFS): a moment without OUT, once.
            placeholder.unlink()
            os.rename(output, placeholder)
            _replace_link(_link_target(output), output)
    if archive.exists() or archive.is_symlink():
        _replace_link(_archive_target(output), archive)


def _rescue_hosts(tree: Path, store: Path, progress: Progress | None) -> None:
    """Per-host writable roots found as a real folder in a bundle move to the store, where no
    bootpack ever deletes anything; the bundle keeps a link in their place."""
    found = tree / layout.HOSTS_DIR
    if found.is_symlink() or not found.is_dir():
        return
    target = store / layout.HOSTS_DIR
    if target.exists() or target.is_symlink():
        target = store / f"{layout.HOSTS_DIR}.{tree.parent.name}"
        if progress is not None:
            progress.warn(f"{found}: kept as {target} (a {store / layout.HOSTS_DIR} exists already)")
    os.rename(found, target)
    if tree.exists():
        os.symlink(os.path.relpath(target, tree), found)


_LEGACY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.(tmp|old)(\.tar\.gz)?")


def _clean_stale(output: Path, store: Path, progress: Progress | None) -> None:
    """Remove what interrupted builds and pulls of OUT left (under the lock, so none is running):
    versions other than the current one in the store, and the `.OUT.XXXXXXXX.tmp`/`.old` folders
    older bootpack versions staged in next to OUT (only those that hold bundle folders). Host
    roots found in them are kept, never deleted."""
    keep = _version_of(store)
    removed = 0
    for entry in sorted(store.iterdir()):
        if entry.name.startswith(VERSION_PREFIX) and entry != keep and entry.is_dir() \
                and not entry.is_symlink():
            _rescue_hosts(entry / output.name, store, progress)
            _to_pool(entry / output.name, store)  # a killed rebuild's recycled tree: no rmdirs
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    for entry in sorted(output.parent.iterdir()):
        m = _LEGACY.fullmatch(entry.name)
        if m is None or m.group("name") != output.name or entry.is_symlink():
            continue
        if entry.is_dir() and not m.group(3) and {p.name for p in entry.iterdir()} <= _BUNDLE_TOP:
            _rescue_hosts(entry, store, progress)
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        elif entry.is_file() and m.group(3):
            entry.unlink()
            removed += 1
    for entry in output.parent.glob(f".{glob_escape(output.name)}.*.link"):
        if entry.is_symlink():
            entry.unlink()
    if removed and progress is not None:
        progress.info(f"Removed {removed} leftover(s) of interrupted builds of {output.name}")


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def fix_modes(root: Path) -> None:
    """Fixed modes whatever the umask: folders 0755, files 0644 (0755 when executable), so
    daemons running as other users (tftpd, nginx, Ganesha) can read the bundle. Root trees
    (roots/<image>/) keep the modes their image gave them; links have none."""
    root.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel = base.relative_to(root).as_posix()
        if rel == layout.ROOTS_DIR:
            dirnames[:] = []
            continue
        if rel == ".":
            dirnames[:] = [d for d in dirnames if not layout.is_user_data(d)]
        for name in dirnames + filenames:
            path = base / name
            st = path.lstat()
            # Only when different: files linked from the previous version keep their ctime.
            if stat.S_ISDIR(st.st_mode):
                want = 0o755
            elif stat.S_ISREG(st.st_mode):
                want = 0o755 if st.st_mode & 0o111 else 0o644
            else:
                continue
            if stat.S_IMODE(st.st_mode) != want:
                path.chmod(want)


@contextlib.contextmanager
def staged_output(output: Path, progress: Progress | None = None) -> Iterator[Path]:
    """Yield an empty folder to write a bundle into; on success it becomes `output`.

    The body may write the archive at `archive_path(staging)`; it is swapped in with the tree,
    as one unit. Holds the output's lock from before the checks until the swap is done.
    """
    output = output.absolute()
    watch(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    store = store_dir(output)
    if not store.is_dir() or store.is_symlink():
        if store.exists() or store.is_symlink():
            raise _refuse(output, f"{store} exists and is not bootpack's folder", "move it away")
        store.mkdir()
    store.chmod(0o755)  # daemons (tftpd, nginx) follow OUT through it
    with _locked(store, output, progress):
        current = _current(output)  # again, under the lock: another build may have swapped
        _check_tree(output, current)
        _clean_stale(output, store, progress)
        if current.legacy:
            _adopt(output, store)
        version = Path(tempfile.mkdtemp(prefix=VERSION_PREFIX, dir=store))
        version.chmod(0o755)
        staging = version / output.name
        staging.mkdir()
        try:
            yield staging
            _commit(output, store, version, progress)
        except BaseException:
            if not _outputs.get(output):
                _to_pool(staging, store, set(_shared.get(staging, {})))
                shutil.rmtree(version, ignore_errors=True)
            raise
        finally:
            _shared.pop(staging, None)
            _vouched.clear()
            _stocked.pop(staging, None)


def _commit(output: Path, store: Path, version: Path, progress: Progress | None) -> None:
    staging = version / output.name
    fix_modes(staging)
    staged_archive = archive_path(staging)
    if staged_archive.exists() and stat.S_IMODE(staged_archive.stat().st_mode) != 0o644:
        staged_archive.chmod(0o644)
    old = _version_of(store)
    with _signals_blocked():
        if old is not None:
            _rescue_hosts(old / output.name, store, progress)
        if (store / layout.HOSTS_DIR).is_dir():
            os.symlink(f"../../{layout.HOSTS_DIR}", staging / layout.HOSTS_DIR)
    shared = _shared.get(staging, {})
    seal = _Seal.make(staging, skip={rel for rel, recycled in shared.items() if recycled})
    seal.write(version)
    _wait_past(seal.ctime_ns)
    _pause("before-swap")
    with _signals_blocked():
        if old is None:
            _ensure_links(output)  # dangling until the flip: OUT and OUT.tar.gz appear at once
        _replace_link(version.name, store / CURRENT)  # the swap: one rename(2)
        _outputs[output] = True
        _fsync_dir(store)
    _ensure_links(output)  # normally there already; a user may have removed one
    _pause("after-swap")
    pooled: set[str] = set()
    if old is not None and old != version:
        # The replaced version's copies of shared trees become the spares (one rename each).
        pooled = _to_pool(old / output.name, store, set(shared))
        shutil.rmtree(old, ignore_errors=True)
        _reseal(version, staging, pooled, seal.ctime_ns)
    # Any other spare is stale (its tree changed or went); stocked ones are this version's.
    _prune_pool(store, pooled | _stocked.get(staging, set()))


def _reseal(version: Path, staging: Path, pooled: AbstractSet[str], floor: int) -> None:
    """Seal again after removing the old version: files a rebuild hard-linked from it got a new
    ctime when their old names went (unlink counts as a change), which would leave them
    unvouched and make the next build hash them all. A content write in these seconds still
    shows (its mtime is not SOURCE_DATE_EPOCH); only one that also forges the mtime back slips.
    Trees whose old copy went to the pool lost no links: not walked again (`floor`, the first
    seal, still covers them)."""
    seal = _Seal.make(staging, skip=pooled, floor=floor)
    seal.write(version)
    index = version / ARCHIVE_INDEX
    archive = archive_path(staging)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(index.read_text())
        st = archive.lstat()
        if st.st_size == data["size"] and st.st_mtime_ns == data["mtime_ns"]:
            data["ctime_ns"] = st.st_ctime_ns
            index.write_text(json.dumps(data) + "\n")
    _wait_past(max(seal.ctime_ns, archive.lstat().st_ctime_ns if archive.exists() else 0))
