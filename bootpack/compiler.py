"""spec -> bundle directory + deterministic archive.

The compiler gathers what goes where (a plan of destination path -> source file or text),
writes it into a staging directory, adds bundle.json and the archive, and swaps the result in
atomically. Rendering is pure (bootpack.render); this module only moves bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .bundle import layout
from .bundle.archive import Member, source_date_epoch, write_archive
from .bundle.manifest import FORMAT as MANIFEST_FORMAT
from .bundle.manifest import (
    Bundle,
    BundleManifest,
    BundleResult,
    FileEntry,
    ImageProvenance,
    LinkEntry,
    LoaderSource,
    bundle_digest,
    make_manifest,
)
from .bundle.output import (
    Previous,
    archive_path,
    check_inputs,
    check_replaceable,
    previous,
    record_archive,
    recycle_tree,
    share_tree,
    shared_trees,
    source_memo,
    staged_output,
    stock_slot,
    watch,
)
from .errors import BootpackError
from .external import run
from .files import sha256_bytes, sha256_file
from .images.builder import BuiltImage, build_images, provenance
from .images.cache import Cache
from .loaders import ImageRoot, find_loader_files, find_loaders
from .progress import NORMAL, Progress
from .render import render_bundle_configs
from .spec import LoadedSpec
from .spec.model import Spec
from .spec.site import Site


@dataclass
class Plan:
    """Destination (relative to the bundle dir) -> where its bytes come from."""

    copies: dict[str, Path] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    trees: dict[str, Path] = field(default_factory=dict)  # destination folder -> source folder
    loaders: dict[str, LoaderSource] = field(default_factory=dict)  # TFTP name -> bundle.json's


@dataclass(frozen=True)
class BuildResult(BundleResult):
    bundle: Bundle

    @property
    def digest(self) -> str:
        return self.bundle.digest


def _plan_built(plan: Plan, built: BuiltImage) -> None:
    tftp = layout.TFTP_DIR
    plan.copies[f"{tftp}/{layout.kernel_path(built.name)}"] = built.kernel
    for mode, initrd in built.initrds.items():
        plan.copies[f"{tftp}/{layout.netboot_initrd_path(built.name, mode)}"] = initrd
    for path, rel in ((built.squashfs, layout.squashfs_path(built.name)),
                      (built.ramdisk, layout.ramdisk_path(built.name))):
        if path is not None:
            plan.copies[f"{tftp}/{rel}"] = path
    if built.tree is not None:
        plan.trees[layout.root_tree_path(built.name)] = built.tree


def plan_bundle(loaded: LoadedSpec, built: Mapping[str, BuiltImage],
                syslinux_dir: Path | None = None) -> Plan:
    """What goes where: pure bookkeeping over the spec and the images `build_images` made."""
    spec = loaded.spec
    plan = Plan()
    # an image that carries Debian's signed loaders for its architecture gives them
    roots = [ImageRoot(n, spec.images[n].architecture, b.root)
             for n, b in sorted(built.items()) if b.root is not None]
    for name, loader in find_loaders(spec.loaders.chains, syslinux_dir, roots).items():
        plan.copies[f"{layout.TFTP_DIR}/{name}"] = loader.path
        plan.loaders[name] = loader.source
    used = {e.image for e in spec.entries if e.image is not None}
    unbuilt = sorted(n for n in used if spec.images[n].container and n not in built)
    if unbuilt:
        raise ValueError(f"images {unbuilt} were not built; run build_images first")
    for name in sorted(used):
        image = spec.images[name]
        if image.container:
            _plan_built(plan, built[name])
            continue
        assert image.kernel is not None
        plan.copies[f"{layout.TFTP_DIR}/{layout.kernel_path(name)}"] = loaded.resolve(image.kernel)
        if image.initrd is not None:
            plan.copies[f"{layout.TFTP_DIR}/{layout.initrd_path(name)}"] = loaded.resolve(image.initrd)
        if image.squashfs is not None and any(
            e.root == "live" and e.image == name for e in spec.entries
        ):
            plan.copies[f"{layout.TFTP_DIR}/{layout.squashfs_path(name)}"] = (
                loaded.resolve(image.squashfs))
    plan.texts.update(render_bundle_configs(spec, Site.from_spec(spec)))
    plan.texts[layout.SPEC] = spec_json(spec)
    return plan


def spec_json(spec: Spec) -> str:
    """The validated spec as JSON (read back by `bootpack serve` with `load_bundle_spec`)."""
    return json.dumps(spec.model_dump(mode="json", by_alias=True), indent=2, sort_keys=True) + "\n"


@dataclass
class SourceDigests:
    """sha256 of source files, remembered by (device, inode, size, mtime, ctime) like git's index:
    a source any write has touched since misses and is hashed again. Lets a rebuild tell that a
    cached squashfs is the one the previous version holds without reading either."""

    known: dict[str, list[object]] = field(default_factory=dict)
    used: dict[str, list[object]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> SourceDigests:
        memo = cls()
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if path is not None:
                memo.known = {str(k): list(v) for k, v in json.loads(path.read_text()).items()}
        return memo

    def digest(self, source: Path) -> tuple[str, int]:
        st = source.stat()
        stamp: list[object] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        key = str(source.absolute())
        row = self.known.get(key)
        if row is None or row[:5] != stamp or not isinstance(row[5], str):
            row = [*stamp, sha256_file(source)[0]]
        self.used[key] = row
        return str(row[5]), st.st_size

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.used) + "\n")
        path.chmod(0o644)


def write_plan(plan: Plan, root: Path, previous: Previous | None = None,
               same_trees: AbstractSet[str] = frozenset(),
               sources: SourceDigests | None = None) -> dict[str, FileEntry]:
    """Write the plan into root; the manifest rows it already knows (by path).

    With `previous` (the version being replaced), a file whose content it holds unchanged is
    hard-linked from it instead of copied, and a root tree in `same_trees` (its image's
    cache keys are the previous version's) is the pool's spare of it, moved in by one rename,
    or else hard-linked from it: a rebuild moves no bulk bytes (see bundle/output.py)."""
    sources = sources or SourceDigests()
    known: dict[str, FileEntry] = {}
    made: set[Path] = set()
    for rel, text in sorted(plan.texts.items()):
        target = root / rel
        if target.parent not in made:  # 3,000 host configs share a few folders
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        data = text.encode("utf-8")
        # "x": the staging folder is new (a name written twice would be a bug); no chmod per
        # file: fix_modes sets 0644 where the umask gave other bits. The digest is known here:
        # the manifest does not read the file again.
        with target.open("xb") as f:
            f.write(data)
        known[rel] = FileEntry(path=rel, sha256=sha256_bytes(data), size=len(data))
    old_rows = {r.path: r for r in previous.manifest.files} if previous else {}
    for rel, source in sorted(plan.copies.items()):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = sources.digest(source)
        known[rel] = FileEntry(path=rel, sha256=digest, size=size)
        old = old_rows.get(rel)
        linked = None
        if previous is not None and isinstance(old, FileEntry) and old.sha256 == digest:
            linked = previous.unchanged(rel, size)
        if linked is not None and stat.S_IMODE(linked.stat().st_mode) == 0o644:
            os.link(linked, target)
            continue
        shutil.copyfile(source, target)
        target.chmod(0o644)
    for rel, source in sorted(plan.trees.items()):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        rows = [r for p, r in old_rows.items() if p.startswith(rel + "/")]
        if previous is not None and rel in same_trees and previous.all_unchanged(
                (r.path, r.size) for r in rows if isinstance(r, FileEntry)):
            if not recycle_tree(previous, root, rel):
                # Hard links to the previous version's tree: same inodes, owners and modes.
                run(["cp", "-al", previous.tree / rel, root / rel], what="linking a root tree")
                share_tree(root, rel)
            known.update({r.path: r for r in rows if isinstance(r, FileEntry)})
            continue
        # cp -a keeps owners, modes and hard links: a root tree needs them (shutil does not).
        run(["cp", "-a", "--reflink=auto", source, root / rel], what="copying a root tree")
    return known


def _fix_times(root: Path, mtime: int, skip: AbstractSet[str] = frozenset()) -> None:
    """Same mtime on every path, so tools that compare times see identical trees. Paths that
    have it already (linked from the previous version) are left alone: no new ctime. Trees in
    `skip` (the previous version's, times and all) are not walked."""
    ns = mtime * 1_000_000_000
    start = len(os.fspath(root)) + 1
    for dirpath, dirnames, filenames in os.walk(root):
        if skip:
            rel = dirpath[start:]
            dirnames[:] = [d for d in dirnames if f"{rel}/{d}" not in skip]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_mtime_ns != ns or st.st_atime_ns != ns:
                os.utime(path, (mtime, mtime), follow_symlinks=False)
    os.utime(root, (mtime, mtime))


def build_inputs(loaded: LoadedSpec, syslinux_dir: Path | None = None) -> dict[str, Path]:
    """Every file and folder a build reads, by what it is (for `check_inputs`)."""
    found = {"the spec": loaded.path}
    for name, image in loaded.spec.images.items():
        for key in ("kernel", "initrd", "squashfs", "dockerfile", "overlay"):
            value = getattr(image, key)
            if value is not None:
                found[f"images.{name}.{key}"] = loaded.base / value
    with contextlib.suppress(BootpackError):
        for name, path in find_loader_files(loaded.spec.loaders.chains, syslinux_dir).items():
            found[name] = path
    return found


def build_bundle(loaded: LoadedSpec, output: Path, *, syslinux_dir: Path | None = None,
                 progress: Progress | None = None, cache: Cache | None = None) -> BuildResult:
    """Compile a loaded spec into `output` and `output.tar.gz`, atomically."""
    progress = progress or Progress(NORMAL)
    watch(output)
    # Refused before minutes of image building (and again, under the output's lock, before the swap).
    check_inputs(output, build_inputs(loaded, syslinux_dir))
    check_replaceable(output, trees=False)  # root trees: under the lock only (15,000 files)
    mtime = source_date_epoch()
    built = build_images(loaded, cache=cache, mtime=mtime, progress=progress)
    with progress.step("Planning the bundle"):
        plan = plan_bundle(loaded, built, syslinux_dir)
    try:
        return _build_staged(loaded, output, plan, built, mtime, progress)
    except _Unchanged as unchanged:  # the empty staging folder is gone; OUT stays as it is
        progress.info("Nothing changed: the bundle and its archive are kept as they are")
        return BuildResult(Bundle(output.absolute(), unchanged.manifest,
                                  archive_path(output.absolute())))


class _Unchanged(Exception):
    """The bundle the build would write is the one OUT holds: raised to leave it untouched."""

    def __init__(self, manifest: BundleManifest) -> None:
        super().__init__("unchanged")
        self.manifest = manifest


def _same_as(before: Previous, plan: Plan, same_trees: AbstractSet[str], sources: SourceDigests,
             loaded: LoadedSpec, images: Mapping[str, ImageProvenance] | None,
             ) -> BundleManifest | None:
    """The previous version's manifest when the plan would write exactly that bundle and every
    file of it is still vouched for by its seal (nothing copied, hashed or linked to know it)."""
    spec = loaded.spec
    old = before.manifest
    old_rows = {r.path: r for r in old.files}
    rows: dict[str, FileEntry | LinkEntry] = {}
    for rel, text in plan.texts.items():
        data = text.encode("utf-8")
        rows[rel] = FileEntry(path=rel, sha256=sha256_bytes(data), size=len(data))
    for rel, source in plan.copies.items():
        digest, size = sources.digest(source)
        rows[rel] = FileEntry(path=rel, sha256=digest, size=size)
    if any(old_rows.get(rel) != row for rel, row in rows.items()):
        return None  # a config changed: no need to add up the tree's rows to know
    for rel in plan.trees:
        if rel not in same_trees:
            return None
        rows.update({r.path: r for r in old.files if r.path.startswith(rel + "/")})
    files = tuple(rows[p] for p in sorted(rows))
    # The digest covers name, version and every row; the rest of bundle.json is compared as is.
    if (old.format != MANIFEST_FORMAT
            or bundle_digest(spec.bundle.name, spec.bundle.version, files) != old.digest
            or (spec.bundle.description, loaded.digest, __version__, images, plan.loaders or None)
            != (old.description, old.spec_digest, old.bootpack_version, old.images, old.loaders)):
        return None
    if not before.all_unchanged((r.path, r.size) for r in files if isinstance(r, FileEntry)):
        return None
    return old


def _build_staged(loaded: LoadedSpec, output: Path, plan: Plan, built: Mapping[str, BuiltImage],
                  mtime: int, progress: Progress) -> BuildResult:
    spec = loaded.spec
    with staged_output(output, progress) as staging:
        before = previous(output)
        if before is not None and before.seal.mtime_ns != mtime * 1_000_000_000:
            before = None  # other file times: linking would change the previous version's files
        same_trees = {layout.root_tree_path(n) for n, b in built.items()
                      if before is not None and before.manifest.images is not None
                      and before.manifest.images.get(n) == provenance(b)}
        if before is not None and before.note:
            progress.warn(before.note)
        sources = SourceDigests.load(source_memo(before.tree) if before else None)
        if before is not None and before.archive is not None:
            same = _same_as(before, plan, same_trees, sources, loaded,
                            {n: provenance(b) for n, b in sorted(built.items())} if built else None)
            if same is not None:
                raise _Unchanged(same)
        with progress.step(f"Writing {len(plan.copies) + len(plan.texts)} files"):
            known = write_plan(plan, staging, before, same_trees, sources)
        sources.save(source_memo(staging))
        shared = set(shared_trees(staging))  # the previous version's trees: nothing to walk
        old_rows = before.manifest.files if before is not None else ()
        manifest = make_manifest(
            staging, name=spec.bundle.name, version=spec.bundle.version,
            description=spec.bundle.description, spec_digest=loaded.digest,
            bootpack_version=__version__,
            images={n: provenance(b) for n, b in sorted(built.items())} if built else None,
            loaders=plan.loaders, known=known,
            trees={rel: [r for r in old_rows if r.path.startswith(rel + "/")] for rel in shared},
        )
        manifest_text = manifest.dumps()
        (staging / layout.MANIFEST).write_text(manifest_text, encoding="utf-8")
        _fix_times(staging, mtime, skip=shared)
        for rel in sorted(set(plan.trees) - shared):
            # A spare of the new tree for the next rebuild (output.py's pool): linked now,
            # before the seal, since linking gives every file a new ctime.
            run(["cp", "-al", staging / rel, stock_slot(staging, rel)], what="linking a root tree")
        with progress.step("Writing the archive"):
            # The rendered texts as written: the archive does not read 3,000 host configs back.
            contents = {rel: text.encode("utf-8") for rel, text in plan.texts.items()}
            contents[layout.MANIFEST] = manifest_text.encode("utf-8")
            members = _archive(staging, manifest, before, f"{spec.bundle.name}-{spec.bundle.version}",
                               mtime, shared, contents)
        record_archive(staging, members)
    return BuildResult(Bundle(output.absolute(), manifest, archive_path(output.absolute())))


def _archive(staging: Path, manifest: BundleManifest, before: Previous | None, prefix: str,
             mtime: int, shared: AbstractSet[str], contents: Mapping[str, bytes]) -> list[Member]:
    """The bundle's archive, from the previous one's gzip members wherever they still fit
    (a shared root tree's member without reading the tree)."""
    target = archive_path(staging)
    digests = {r.path: r.sha256 for r in manifest.files if isinstance(r, FileEntry)}
    earlier = (before.archive, before.members) if before and before.archive else None
    members = write_archive(staging, target, prefix, mtime, digests=digests, earlier=earlier,
                            same_trees=shared, contents=contents)
    if earlier is not None and [m.key for m in members] == [m.key for m in earlier[1]]:
        # Nothing changed: the same bytes are already on disk; share them (no 600 MB copy next time).
        target.unlink()
        os.link(earlier[0], target)
    return members
