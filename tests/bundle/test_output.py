"""Nothing lost, ever: what `build -o`/`pull -o` refuse to replace, the atomic swap of a bundle and
its archive under real signals and real concurrency, the lock, leftovers, host roots, modes."""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from bootpack.bundle import Bundle
from bootpack.bundle.archive import extract_archive, write_archive
from bootpack.bundle.output import PAUSE_ENV, check_inputs, staged_output, store_dir
from bootpack.bundle.verify import archive_manifest, verify
from bootpack.cli import main
from bootpack.errors import BootpackError
from tests.bundle.test_build import tree_digest
from tests.conftest import REPO
from tests.support.outputs import leftovers
from tests.support.specs import LAB, lab_data, write_spec


def build(spec: Path, output: Path, *extra: str) -> int:
    return main(["-q", "build", str(spec), "--output", str(output), *extra])


def other_spec(folder: Path) -> Path:
    """A second spec in its own folder whose bundle differs from LAB's (no hosts)."""
    data = lab_data()
    data["hosts"] = []
    return write_spec(folder, data)


def bundle_state(out: Path) -> str | None:
    """The digest that out/ and out.tar.gz both hold, None when neither exists; fails on a mix,
    a half bundle or a lone half."""
    archive = out.with_name(out.name + ".tar.gz")
    if not out.exists() and not archive.exists():
        return None
    bundle = Bundle.open(out)
    assert verify(bundle) == []
    assert archive_manifest(archive) == bundle.manifest, "out/ and out.tar.gz hold different bundles"
    return bundle.digest


# --- What is refused -------------------------------------------------------------------------------

def test_a_folder_with_someone_elses_bundle_json_is_not_replaced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    webapp = tmp_path / "webapp"
    webapp.mkdir()
    (webapp / "bundle.json").write_text('{"name": "webapp", "dependencies": {}}\n')
    (webapp / "index.html").write_text("<h1>shop</h1>")
    assert build(write_spec(tmp_path / "in", LAB), webapp) == 2
    err = capsys.readouterr().err
    assert f"--output {webapp}: is not a bootpack bundle" in err and "Traceback" not in err
    assert (webapp / "index.html").read_text() == "<h1>shop</h1>"


def test_a_bundle_with_a_file_added_or_changed_is_not_replaced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    out = tmp_path / "out"
    assert build(spec, out) == 0
    (out / "etc/notes.txt").write_text("my notes")
    assert build(spec, out) == 2
    err = capsys.readouterr().err
    assert "holds files that are not the bundle's own, which replacing it would delete: " \
           "unexpected: etc/notes.txt; move them out" in err
    (out / "etc/notes.txt").unlink()
    # An edit that keeps the size and even the mtime: caught by its ctime, then its hash.
    conf = out / "etc/dhcpd.conf"
    text = conf.read_text()
    before = conf.stat()
    conf.write_text(text.replace("10.0.2.2", "10.0.2.9", 1))
    os.utime(conf, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert build(spec, out) == 2
    assert "changed: etc/dhcpd.conf (same size, other content)" in capsys.readouterr().err
    assert "10.0.2.9" in conf.read_text()
    conf.write_text(text)  # put back: replaceable again (a chmod/touch alone only costs a hash)
    assert build(spec, out) == 0


def test_an_edited_bundle_json_or_a_foreign_archive_is_not_replaced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    out = tmp_path / "out"
    # Someone's own out.tar.gz next to a new output is theirs, not an old bundle archive.
    (tmp_path / "out.tar.gz").write_bytes(b"my backup")
    assert build(spec, out) == 2
    assert "out.tar.gz exists and is not a bootpack archive, and would be overwritten" in \
        capsys.readouterr().err
    assert (tmp_path / "out.tar.gz").read_bytes() == b"my backup"
    (tmp_path / "out.tar.gz").unlink()
    assert build(spec, out) == 0
    manifest = out / "bundle.json"
    text = manifest.read_text()
    edited = re.sub(r'"size": (\d+)', lambda m: f'"size": {int(m[1]) + 1}', text, count=1)
    assert edited != text
    manifest.write_text(edited)
    assert build(spec, out) == 2
    assert "changed: bundle.json (its digest does not add up)" in capsys.readouterr().err


def test_a_foreign_symlink_or_file_as_output_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    elsewhere = tmp_path / "site"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    assert build(spec, tmp_path / "link") == 2
    assert "link: is a symbolic link to " in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert build(spec, tmp_path / "file") == 2
    assert "file: exists and is not a directory" in capsys.readouterr().err


def test_an_output_holding_an_input_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `build out/site.toml -o out`: out/ is an earlier bundle that the user also keeps the spec in.
    spec = write_spec(tmp_path / "in", LAB)
    out = tmp_path / "out"
    assert build(spec, out) == 0
    shutil.copy(spec, out / "site.toml")
    shutil.copytree(tmp_path / "in/artifacts", out / "artifacts")
    assert build(out / "site.toml", out) == 2
    err = capsys.readouterr().err
    assert f"--output {out}: replacing it would delete the spec (out/site.toml), an input" in err
    assert (out / "site.toml").is_file() and (out / "artifacts/vmlinuz").is_file()
    # The spec's own folder (the kernel and initrd are in it too).
    assert build(spec, tmp_path / "in") == 2
    assert "replacing it would delete the spec" in capsys.readouterr().err
    # Through a symlink: the spec is a link whose target lives in the output.
    target = tmp_path / "data"
    target.mkdir()
    shutil.copytree(tmp_path / "in/artifacts", target / "artifacts")
    shutil.copy(spec, target / "spec.toml")
    linked = tmp_path / "linked.toml"
    linked.symlink_to(target / "spec.toml")
    with pytest.raises(BootpackError, match=r"would delete the spec \(data/spec\.toml\)"):
        check_inputs(target, {"the spec": linked})
    # A kernel named like the archive, and an output inside an overlay folder.
    with pytest.raises(BootpackError, match=r"would delete images\.x\.kernel"):
        check_inputs(tmp_path / "out", {"images.x.kernel": tmp_path / "out.tar.gz"})
    with pytest.raises(BootpackError, match=r"is inside images\.x\.overlay .*build into a folder outside it"):
        check_inputs(target / "artifacts" / "bundle", {"images.x.overlay": target / "artifacts"})
    check_inputs(tmp_path / "elsewhere", {"the spec": linked, "images.x.overlay": target})


# --- Host roots ----------------------------------------------------------------------------------

def test_per_host_writable_roots_in_the_bundle_folder_survive_rebuilds(tmp_path: Path) -> None:
    """<server.root>/hosts/<name> is inside the bundle folder when the bundle is deployed at
    server.root: a rebuild carries it over (kept outside every version, linked in)."""
    spec = write_spec(tmp_path / "in", LAB)
    out = tmp_path / "out"
    assert build(spec, out) == 0
    node = out / "hosts" / "node1"
    (node / "etc").mkdir(parents=True)
    (node / "etc" / "hostname").write_text("node1, configured by hand\n")
    assert verify(Bundle.open(out)) == []  # hosts/ is not the bundle's
    assert build(other_spec(tmp_path / "in2"), out) == 0
    assert (node / "etc" / "hostname").read_text() == "node1, configured by hand\n"
    assert (store_dir(out) / "hosts").is_dir() and (out / "hosts").is_symlink()
    (node / "var").mkdir()
    (node / "var" / "log").write_text("written while serving\n")
    assert build(spec, out) == 0
    assert (node / "var" / "log").read_text() == "written while serving\n"
    assert bundle_state(out) is not None
    with tarfile.open(out.with_name("out.tar.gz")) as tar:
        # The bundle's own hosts/ (user data) is not archived; grub/hosts/ is bundle content.
        assert not [n for n in tar.getnames() if n.split("/")[1:2] == ["hosts"]]
    assert leftovers(tmp_path) == [".out.bootpack/hosts"]


def test_pull_into_a_bundle_with_host_roots_keeps_them(tmp_path: Path) -> None:
    """`bootpack pull` uses the same staged output: what it installs is swapped the same way."""
    spec = write_spec(tmp_path / "in", LAB)
    assert build(spec, tmp_path / "a") == 0
    out = tmp_path / "out"
    assert build(spec, out) == 0
    (out / "hosts" / "node1").mkdir(parents=True)
    (out / "hosts" / "node1" / "data").write_text("keep")
    with staged_output(out) as staging:  # the body pull_bundle runs, without the registry
        shutil.copyfile(tmp_path / "a.tar.gz", staging.with_name("out.tar.gz"))
        extract_archive(staging.with_name("out.tar.gz"), staging)
        assert verify(Bundle.open(staging)) == []
    assert (out / "hosts" / "node1" / "data").read_text() == "keep"
    assert bundle_state(out) == Bundle.open(tmp_path / "a").digest


# --- Atomic swap under real signals --------------------------------------------------------------

def start(spec: Path, out: Path, pause: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != PAUSE_ENV}
    if pause:
        env[PAUSE_ENV] = pause
    return subprocess.Popen([sys.executable, "-m", "bootpack", "-q", "build", str(spec), "-o", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen[str], text: str) -> str:
    assert proc.stderr is not None
    seen = ""
    while text not in seen:
        line = proc.stderr.readline()
        assert line, f"build ended before {text!r}: {seen}"
        seen += line
    return seen


@pytest.fixture
def two_bundles(tmp_path: Path) -> tuple[Path, Path, str, str]:
    """Spec A built into out (the old bundle), spec B (the new one) and both digests."""
    a, b = write_spec(tmp_path / "a", LAB), other_spec(tmp_path / "b")
    assert build(b, tmp_path / "ref" / "b") == 0
    assert build(a, tmp_path / "out") == 0
    return a, b, Bundle.open(tmp_path / "out").digest, Bundle.open(tmp_path / "ref" / "b").digest


@pytest.mark.parametrize(("point", "sig", "survivor"), [
    ("before-swap", signal.SIGKILL, "old"), ("after-swap", signal.SIGKILL, "new"),
    ("before-swap", signal.SIGINT, "old"), ("after-swap", signal.SIGINT, "new"),
])
def test_killed_or_interrupted_at_the_swap_leaves_old_or_new_never_a_mix(
        tmp_path: Path, two_bundles: tuple[Path, Path, str, str], point: str,
        sig: signal.Signals, survivor: str) -> None:
    a, b, old, new = two_bundles
    out = tmp_path / "out"
    proc = start(b, out, pause=point)
    wait_for(proc, f"paused at {point}")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert bundle_state(out) == (old if survivor == "old" else new)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Traceback" not in err
        if survivor == "old":
            assert f"bootpack: interrupted; {out} and out.tar.gz were left as they were" in err
            assert leftovers(tmp_path) == []
        else:
            assert f"bootpack: interrupted; {out} and out.tar.gz already hold the new bundle" in err
    # Whatever was left behind, the next build removes it.
    assert build(a, out) == 0
    assert bundle_state(out) == old and leftovers(tmp_path) == []


def test_kills_at_random_moments_never_leave_a_mix(
        tmp_path: Path, two_bundles: tuple[Path, Path, str, str]) -> None:
    a, b, old, new = two_bundles
    out = tmp_path / "out"
    rng = random.Random(9)
    seen = set()
    for i in range(8):
        proc = start(b if i % 2 == 0 else a, out)
        time.sleep(rng.uniform(0.3, 1.6))
        proc.kill()
        proc.communicate()
        state = bundle_state(out)
        assert state in (old, new)
        seen.add(proc.returncode)
    assert build(a, out) == 0
    assert bundle_state(out) == old and leftovers(tmp_path) == []


def test_two_builds_at_once_take_turns(tmp_path: Path, two_bundles: tuple[Path, Path, str, str]) -> None:
    a, b, old, new = two_bundles
    out = tmp_path / "out"
    first = start(b, out, pause="before-swap")  # holds the lock, about to swap
    wait_for(first, "paused at before-swap")
    second = start(a, out)
    wait_for(second, "is writing it; waiting for it")
    assert bundle_state(out) == old
    first.send_signal(signal.SIGUSR1)
    assert first.wait(60) == 0
    assert second.wait(60) == 0
    assert bundle_state(out) == old  # the second one's spec, swapped in after the first
    # And without any pause: two at once, both succeed, the result is whole.
    procs = [start(b, out), start(a, out)]
    ended = [(p.wait(60), p.communicate()[1]) for p in procs]
    assert [status for status, _ in ended] == [0, 0], [err for _, err in ended]
    assert bundle_state(out) in (old, new) and leftovers(tmp_path) == []


def test_the_early_check_is_no_refusal_when_another_build_swapped_mid_walk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The early check (before image building) walks the current version without the lock; a
    # build that swaps OUT and removes that version meanwhile must not make it fail (seen as
    # "No such file or directory", exit 2, in two builds started at once). The race is replayed:
    # the check is handed what `_current` answered before the other build's swap.
    from bootpack.bundle import output as output_module

    out = tmp_path / "out"
    assert build(write_spec(tmp_path / "in", LAB), out) == 0
    before = output_module._current(out.absolute())
    assert build(other_spec(tmp_path / "in2"), out) == 0
    assert before.tree is not None and not before.tree.exists()  # removed by the swap
    now = output_module._current(out.absolute())
    monkeypatch.setattr(output_module, "_current", lambda output: before)
    output_module.check_replaceable(out, trees=False)  # no refusal, no OSError
    # Still the current version: whatever the walk finds is reported, as before.
    assert now.tree is not None
    (now.tree / "tftpboot" / "stray.conf").write_text("x")
    monkeypatch.setattr(output_module, "_current", lambda output: now)
    with pytest.raises(BootpackError, match=r"stray\.conf"):
        output_module.check_replaceable(out, trees=False)

# --- Leftovers, archive reuse, modes, older layouts ---------------------------------------------

def test_stale_leftovers_are_removed_and_only_bootpacks(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    out = tmp_path / "out"
    assert build(spec, out) == 0
    store = store_dir(out)
    (store / "v-killed1" / "out" / "tftpboot").mkdir(parents=True)  # a build killed mid-write
    old = tmp_path / ".out.k3j_9x0a.old"  # older bootpack: killed between its renames
    (old / "tftpboot").mkdir(parents=True)
    (old / "hosts" / "node1").mkdir(parents=True)
    (old / "hosts" / "node1" / "state").write_text("host data")
    (tmp_path / ".out.a1b2c3d4.tmp").mkdir()
    (tmp_path / ".out.a1b2c3d4.tmp" / "etc").mkdir()
    (tmp_path / ".out.a1b2c3d4.tmp.tar.gz").write_bytes(b"half an archive")
    mine = tmp_path / ".out.zzzzzzzz.tmp"  # the same pattern, but not a bundle: the user's
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert build(other_spec(tmp_path / "in2"), out) == 0
    assert sorted(leftovers(tmp_path)) == [".out.bootpack/hosts", ".out.zzzzzzzz.tmp"]
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert (out / "hosts" / "node1" / "state").read_text() == "host data"


def test_a_damaged_archive_is_not_reused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    out = tmp_path / "out"
    assert build(spec, out) == 0
    good = out.with_name("out.tar.gz").read_bytes()
    out.with_name("out.tar.gz").write_text("corrupted\n")
    assert main(["build", str(spec), "-o", str(out)]) == 0
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "out.tar.gz was changed after bootpack wrote it" in err
    assert "writing the archive again in full" in err
    assert out.with_name("out.tar.gz").read_bytes() == good
    first = out.with_name("out.tar.gz").resolve().stat()
    assert main(["build", str(spec), "-o", str(out)]) == 0  # intact now: reused as it is
    assert "changed after bootpack wrote it" not in capsys.readouterr().err
    again = out.with_name("out.tar.gz").resolve().stat()
    assert (again.st_ino, again.st_dev) == (first.st_ino, first.st_dev)  # linked, not rewritten
    assert out.with_name("out.tar.gz").read_bytes() == good
    assert bundle_state(out) is not None


def test_modes_are_fixed_whatever_the_umask(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    out = tmp_path / "out"
    old = os.umask(0o077)
    try:
        assert build(spec, out) == 0
    finally:
        os.umask(old)
    real = out.resolve()
    assert store_dir(out).stat().st_mode & 0o777 == 0o755
    assert real.parent.stat().st_mode & 0o777 == 0o755
    for path in [real, *real.rglob("*")]:
        want = 0o755 if path.is_dir() else 0o644
        assert path.stat().st_mode & 0o777 == want, path
    assert out.with_name("out.tar.gz").stat().st_mode & 0o777 == 0o644


def test_a_bundle_from_an_older_bootpack_is_adopted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plain out/ folder and out.tar.gz (the layout before versioned outputs) is checked file
    by file (no seal: every same-size file hashed), then moved into the versioned layout."""
    spec = write_spec(tmp_path / "in", LAB)
    assert build(spec, tmp_path / "new") == 0
    out = tmp_path / "out"
    shutil.copytree(tmp_path / "new", out, symlinks=True)
    shutil.copyfile(tmp_path / "new.tar.gz", tmp_path / "out.tar.gz")
    conf = out / "tftpboot/pxelinux.cfg/default"
    text = conf.read_text()
    conf.write_text(text.replace("Lab", "Lax", 1))
    assert build(spec, out) == 2
    assert "changed: tftpboot/pxelinux.cfg/default (same size, other content)" in capsys.readouterr().err
    conf.write_text(text)
    (out / "hosts" / "node1").mkdir(parents=True)
    (out / "hosts" / "node1" / "data").write_text("keep")
    assert build(other_spec(tmp_path / "in2"), out) == 0
    assert out.is_symlink() and out.with_name("out.tar.gz").is_symlink()
    assert (out / "hosts" / "node1" / "data").read_text() == "keep"
    assert bundle_state(out) is not None
    assert leftovers(tmp_path) == [".out.bootpack/hosts"]


def test_an_empty_folder_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert build(write_spec(tmp_path / "in", LAB), tmp_path / "out") == 0
    assert bundle_state(tmp_path / "out") is not None


def test_a_rewritten_archive_of_the_same_tree_is_byte_identical(tmp_path: Path) -> None:
    """write_archive follows OUT's link to its version: the top entry is a folder, as before."""
    assert build(write_spec(tmp_path / "in", LAB), tmp_path / "out") == 0
    again = tmp_path / "again.tar.gz"
    write_archive(tmp_path / "out", again, "lab-1.0.0")
    assert again.read_bytes() == (tmp_path / "out.tar.gz").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(again.read_bytes())) as tar:
        assert tar.getmembers()[0].isdir()
    assert tree_digest(tmp_path / "out") == tree_digest((tmp_path / "out").resolve())
