"""Is a bundle what its bundle.json says? Checked on a directory, or on an archive in one pass."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path

from ..errors import BootpackError
from ..files import sha256_file, sha256_stream
from ..progress import Progress
from . import layout
from .archive import write_archive
from .manifest import Bundle, BundleManifest, Entry, FileEntry, LinkEntry, list_files


def verify(bundle: Bundle) -> list[str]:
    """Differences between a bundle directory and its manifest (empty when intact)."""
    want = {row.path: row for row in bundle.manifest.files}
    have = {row.path: row for row in list_files(bundle.directory)}
    problems = [f"missing: {p}" for p in sorted(want.keys() - have.keys())]
    problems += [f"unexpected: {p}" for p in sorted(have.keys() - want.keys())]
    problems += [f"changed: {p}" for p in sorted(want.keys() & have.keys()) if want[p] != have[p]]
    return problems


def _never(st: os.stat_result) -> bool:
    return False


def user_changes(directory: Path, manifest: BundleManifest,
                 unchanged: Callable[[os.stat_result], bool] = _never, *,
                 skip: AbstractSet[str] = frozenset(),
                 vouched: set[str] | None = None) -> list[str]:
    """What replacing `directory` would lose: every file or link that its manifest does not list
    or that differs from its row ("unexpected: PATH", "changed: PATH"), sorted.

    Fast on big bundles: paths, types, sizes and link targets come from one lstat walk. Only a
    regular file with the listed size can still hide a change (an edit that keeps the size), so
    only those are hashed, unless `unchanged(stat)` vouches for them (output.py's seal: a ctime
    no later than when the bundle was sealed). Missing files are not reported: replacing a folder
    that lacks some of its bundle's files loses nothing. Directories, device nodes, FIFOs and
    sockets hold no data and are not listed in manifests (root trees have them); hosts/ at the
    top holds per-host writable roots, which are carried over, never replaced.

    Folders in `skip` are not entered. `vouched`, when given, collects the listed regular files
    that `unchanged` vouched for (present, listed size): what a rebuild may hard-link or reuse.
    """
    want = {row.path: row for row in manifest.files}
    problems: list[str] = []
    stack = [(os.fspath(directory), "")]  # strings, not Paths: pathlib costs 5x the lstat here
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as found:
            entries = list(found)
        for entry in entries:
            rel = prefix + entry.name
            if rel == layout.MANIFEST or layout.is_user_data(rel):
                continue
            st = entry.stat(follow_symlinks=False)
            row = want.get(rel)
            if stat.S_ISDIR(st.st_mode):
                if row is not None:
                    problems.append(f"changed: {rel} (now a folder)")
                if rel not in skip:
                    stack.append((entry.path, rel + "/"))
            elif stat.S_ISLNK(st.st_mode):
                if row is None:
                    problems.append(f"unexpected: {rel}")
                elif not isinstance(row, LinkEntry) or os.readlink(entry.path) != row.link:
                    problems.append(f"changed: {rel}")
            elif stat.S_ISREG(st.st_mode):
                if row is None:
                    problems.append(f"unexpected: {rel}")
                elif not isinstance(row, FileEntry) or st.st_size != row.size:
                    problems.append(f"changed: {rel}")
                elif unchanged(st):
                    if vouched is not None:
                        vouched.add(rel)
                elif sha256_file(Path(entry.path))[0] != row.sha256:
                    problems.append(f"changed: {rel} (same size, other content)")
    return sorted(problems, key=lambda p: p.split(": ", 1)[1])


def check_digest(manifest: BundleManifest, where: str) -> None:
    """The manifest's bundle digest is the one its file rows add up to."""
    computed = manifest.computed_digest()
    if computed != manifest.digest:
        raise BootpackError(f"{where}: {layout.MANIFEST} says digest {manifest.digest} but its "
                            f"files add up to {computed}")


def archive_manifest(archive: Path) -> BundleManifest:
    """Read bundle.json from an archive and check every file in it, in one streaming pass."""
    rows: dict[str, Entry] = {}
    manifest: BundleManifest | None = None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            prefix = None
            for member in tar:
                if prefix is None:
                    if not member.isdir():
                        raise BootpackError(f"{archive}: not a bootpack archive")
                    prefix = member.name + "/"
                    continue
                rel = member.name.removeprefix(prefix)
                if member.issym():
                    rows[rel] = LinkEntry(path=rel, link=member.linkname)
                elif member.isreg():
                    f = tar.extractfile(member)
                    assert f is not None
                    if rel == layout.MANIFEST:
                        manifest = BundleManifest.loads(f.read(), f"{archive}: {layout.MANIFEST}")
                        continue
                    digest, _ = sha256_stream(f)
                    rows[rel] = FileEntry(path=rel, sha256=digest, size=member.size)
    except (OSError, tarfile.TarError, EOFError, ValueError) as exc:
        raise BootpackError(f"{archive}: unreadable archive: {exc}") from None
    if manifest is None:
        raise BootpackError(f"{archive}: no {layout.MANIFEST} inside; not a bootpack archive")
    if {row.path: row for row in manifest.files} != rows:
        raise BootpackError(f"{archive}: its files do not match its {layout.MANIFEST}")
    check_digest(manifest, str(archive))
    return manifest


def check_directory(bundle: Bundle) -> None:
    """Every file of the directory against bundle.json, and bundle.json's own digest."""
    problems = verify(bundle)
    if problems:
        raise BootpackError(f"{bundle.directory}: the bundle does not match its {layout.MANIFEST}: "
                            + ", ".join(problems[:5])
                            + (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
                            + "; rebuild it with `bootpack build`")
    check_digest(bundle.manifest, str(bundle.directory / layout.MANIFEST))


def verified_archive(bundle: Bundle, workdir: Path, progress: Progress) -> Bundle:
    """The bundle with an archive known to hold exactly it.

    Its DIR.tar.gz when that holds this bundle; otherwise the directory is checked and the
    deterministic archive written again into workdir (same files, same bytes for the same
    SOURCE_DATE_EPOCH).
    """
    if bundle.archive.is_file():
        with progress.step(f"Checking {bundle.archive.name}"):
            try:
                if archive_manifest(bundle.archive).digest == bundle.digest:
                    return bundle
            except BootpackError as exc:
                progress.warn(f"{exc}; writing the archive again")
    with progress.step(f"Checking {bundle.directory.name} against its {layout.MANIFEST}"):
        check_directory(bundle)
    stem = f"{bundle.name}-{bundle.version}"
    archive = workdir / f"{stem}.tar.gz"
    with progress.step(f"Writing {archive.name}"):
        write_archive(bundle.directory, archive, stem)
    return bundle.with_archive(archive)
