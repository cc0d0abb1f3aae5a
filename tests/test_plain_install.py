"""What the README shows works from a plain `pip install` of the package, run outside the checkout.

The package is installed (not editable) into a fresh virtual environment, and every command runs
from a folder that has no bootpack source in it: package data (the appliance Dockerfile) and
imports must come from the installed package, never from the source tree.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.conftest import REPO, docker_available
from tests.support.registry_server import registry_available, run_registry
from tests.support.specs import write_spec


@pytest.fixture(scope="session")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding a plain (non-editable) install of a copy of this checkout."""
    top = tmp_path_factory.mktemp("plain")
    source = top / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "out", "examples/artifacts", ".mypy_cache",
        ".ruff_cache", ".pytest_cache"))
    venv = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check",
                    str(source)], check=True, capture_output=True)
    shutil.rmtree(source)  # nothing may refer back to it
    return venv


def bootpack(venv: Path, cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin/bootpack"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def plain_bundle(plain_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("plain-work")
    spec = write_spec(work)
    result = bootpack(plain_venv, work, "build", spec, "--output", work / "out" / "lab")
    assert result.returncode == 0, result.stderr
    return work / "out" / "lab"


def test_the_readme_commands_work_from_a_plain_install(plain_venv: Path, plain_bundle: Path,
                                                       tmp_path: Path) -> None:
    assert (plain_bundle / "bundle.json").is_file()
    assert (plain_bundle.parent / "lab.tar.gz").is_file()
    assert "bootpack" in bootpack(plain_venv, tmp_path, "--version").stdout
    for command in (["--help"], ["schema"], ["cache", "info"], ["serve", "--help"],
                    ["push", "--help"], ["image", "--help"]):
        result = bootpack(plain_venv, tmp_path, *command)
        assert result.returncode == 0, (command, result.stderr)
    # package data a build reads: the live initrd's /init (built images' live entries)
    init = subprocess.run([str(plain_venv / "bin/python"), "-c",
                           "from bootpack.images.netboot import live_init_script as s; print(s())"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert init.returncode == 0 and "exec switch_root /sysroot" in init.stdout, init.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = 1\n[bundle]\nname = 'x'\n")
    result = bootpack(plain_venv, tmp_path, "validate", bad)
    assert result.returncode == 2 and "bootpack: error:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def image_tag() -> Iterator[str]:
    tag = "bootpack-plain-install-test:1"
    yield tag
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker.from_env().images.remove(tag, force=True)


@pytest.mark.docker
def test_image_bakes_from_a_plain_install(plain_venv: Path, plain_bundle: Path, tmp_path: Path,
                                          image_tag: str) -> None:
    if not docker_available():
        pytest.skip("no Docker engine answers")
    result = bootpack(plain_venv, tmp_path, "image", plain_bundle, "--tag", image_tag)
    assert result.returncode == 0, result.stderr[-3000:]
    assert image_tag in result.stdout
    # The image's entry point (bootpack serve) is installed and runs.
    out = docker.from_env().containers.run(image_tag, ["--help"], remove=True)
    assert b"usage: bootpack serve" in out


def test_push_inspect_pull_from_a_plain_install(plain_venv: Path, plain_bundle: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Registry support is part of a plain install: no extra, no oras."""
    if not registry_available():
        pytest.skip("needs /usr/bin/docker-registry (scripts/install --test)")
    found = subprocess.run([str(plain_venv / "bin/python"), "-c",
                            "import importlib.util; print(importlib.util.find_spec('oras'))"],
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "None"
    (tmp_path / "docker-config").mkdir()
    (tmp_path / "docker-config/config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    work = tmp_path / "work"
    work.mkdir()
    with run_registry(tmp_path / "registry") as server:
        repo = f"{server.host}/site/plain"
        result = bootpack(plain_venv, work, "push", plain_bundle, repo, "--no-image", "--insecure")
        assert result.returncode == 0, result.stderr
        assert f"{repo}:1.0.0@sha256:" in result.stdout
        result = bootpack(plain_venv, work, "inspect", repo, "--insecure", "--json")
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        assert {(r["tag"], r["kind"], r["version"]) for r in rows} == {
            ("1.0.0", "bundle", "1.0.0"), ("latest", "bundle", "1.0.0")}
        result = bootpack(plain_venv, work, "pull", f"{repo}:1.0.0", "-o", work / "pulled", "--insecure")
        assert result.returncode == 0, result.stderr
    assert (work / "pulled/bundle.json").read_bytes() == (plain_bundle / "bundle.json").read_bytes()
    assert (work / "pulled.tar.gz").read_bytes() == (plain_bundle.parent / "lab.tar.gz").read_bytes()
    assert "Traceback" not in result.stderr
