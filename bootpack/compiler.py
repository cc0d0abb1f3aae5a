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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .bundle import layout
from .bundle.archive import source_date_epoch, write_archive
from .bundle.manifest import Bundle, BundleResult, make_manifest
from .bundle.output import archive_path, check_inputs, check_replaceable, staged_output, watch
from .bundle.verify import archive_manifest
from .errors import BootpackError
from .external import run
from .files import walk
from .images.builder import BuiltImage, build_images, provenance
from .images.cache import Cache
from .loaders import find_loader_files
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


@dataclass(frozen=True)
class BuildResult(BundleResult):
    bundle: Bundle

    @property
    def digest(self) -> str:
        return self.bundle.digest


def _plan_built(plan: Plan, built: BuiltImage) -> None:
    tftp = layout.TFTP_DIR
    plan.copies[f"{tftp}/{layout.kernel_path(built.name)}"] = built.kernel
    for path, rel in ((built.initrd, layout.initrd_path(built.name)),
                      (built.squashfs, layout.squashfs_path(built.name)),
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
    for name, source in find_loader_files(spec.loaders.chains, syslinux_dir).items():
        plan.copies[f"{layout.TFTP_DIR}/{name}"] = source
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


def write_plan(plan: Plan, root: Path) -> None:
    for rel, text in sorted(plan.texts.items()):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(0o644)
    for rel, source in sorted(plan.copies.items()):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        target.chmod(0o644)
    for rel, source in sorted(plan.trees.items()):
        # cp -a keeps owners, modes and hard links: a root tree needs them (shutil does not).
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", "--reflink=auto", source, root / rel], what="copying a root tree")


def _fix_times(root: Path, mtime: int) -> None:
    """Same mtime on every path, so tools that compare times see identical trees."""
    for path in walk(root):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    os.utime(root, (mtime, mtime))


def _unchanged(output: Path, staging: Path, mtime: int) -> bool:
    """The earlier bundle at output has the same manifest and file times as the new one, so its
    archive has the same bytes (a rebuild with nothing changed skips minutes of gzip on big
    root trees). The manifest covers every file's digest, the bootpack version and, for built
    images, the cache keys of their root trees (owners and modes included)."""
    old = output / layout.MANIFEST
    try:
        return old.stat().st_mtime == mtime and old.read_bytes() == (staging / layout.MANIFEST).read_bytes()
    except OSError:
        return False


def _reusable_archive(previous: Path, staging: Path, progress: Progress) -> bool:
    """The previous archive, checked: every file in it against its bundle.json, and that
    bundle.json against the new one (a damaged or replaced archive is written again)."""
    try:
        return archive_manifest(previous).dumps() == (staging / layout.MANIFEST).read_text()
    except BootpackError as exc:
        progress.warn(f"{exc}; writing the archive again")
        return False


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


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source.resolve(), target)  # same file system, same bytes: nothing to copy
    except OSError:
        shutil.copyfile(source, target)


def build_bundle(loaded: LoadedSpec, output: Path, *, syslinux_dir: Path | None = None,
                 progress: Progress | None = None, cache: Cache | None = None) -> BuildResult:
    """Compile a loaded spec into `output` and `output.tar.gz`, atomically."""
    progress = progress or Progress(NORMAL)
    spec = loaded.spec
    watch(output)
    # Refused before minutes of image building (and again, under the output's lock, before the swap).
    check_inputs(output, build_inputs(loaded, syslinux_dir))
    check_replaceable(output)
    mtime = source_date_epoch()
    built = build_images(loaded, cache=cache, mtime=mtime, progress=progress)
    with progress.step("Planning the bundle"):
        plan = plan_bundle(loaded, built, syslinux_dir)
    with staged_output(output, progress) as staging:
        with progress.step(f"Writing {len(plan.copies) + len(plan.texts)} files"):
            write_plan(plan, staging)
        manifest = make_manifest(
            staging, name=spec.bundle.name, version=spec.bundle.version,
            description=spec.bundle.description, spec_digest=loaded.digest,
            bootpack_version=__version__,
            images={n: provenance(b) for n, b in sorted(built.items())} if built else None,
        )
        (staging / layout.MANIFEST).write_text(manifest.dumps(), encoding="utf-8")
        _fix_times(staging, mtime)
        previous = archive_path(output.absolute())
        reuse = _unchanged(output.absolute(), staging, mtime) and previous.is_file()
        if reuse:
            with progress.step(f"Checking the unchanged {previous.name}"):
                reuse = _reusable_archive(previous, staging, progress)
        if reuse:
            _link_or_copy(previous, archive_path(staging))
        else:
            with progress.step("Writing the archive"):
                write_archive(staging, archive_path(staging),
                              f"{spec.bundle.name}-{spec.bundle.version}", mtime)
    return BuildResult(Bundle(output.absolute(), manifest, archive_path(output.absolute())))
