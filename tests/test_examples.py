"""Every example validates and builds against real artifacts (Debian's kernel, a busybox initrd)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from bootpack.cli import main
from tests.support.marker import write_artifacts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILE_EXAMPLES = ["kernel-dev", "cluster"]


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("examples")
    for name in FILE_EXAMPLES:
        shutil.copytree(EXAMPLES / name, copy / name)
    write_artifacts(copy / "artifacts")
    return copy


@pytest.mark.parametrize("name", FILE_EXAMPLES)
def test_example_builds(examples: Path, name: str) -> None:
    spec = examples / name / "spec.toml"
    assert main(["validate", str(spec)]) == 0
    started = time.monotonic()
    assert main(["-q", "build", str(spec), "--output", str(examples / "out" / name)]) == 0
    print(f"{name}: build {time.monotonic() - started:.2f} s")
    assert (examples / "out" / name / "tftpboot/pxelinux.cfg/default").is_file()


def test_cluster_gives_every_node_its_own_config(examples: Path) -> None:
    spec = examples / "cluster" / "spec.toml"
    assert main(["-q", "build", str(spec), "--output", str(examples / "c")]) == 0
    configs = sorted((examples / "c/tftpboot/pxelinux.cfg").iterdir())
    assert len(configs) == 9  # default + 8 nodes
    assert "node=3" in (examples / "c/tftpboot/pxelinux.cfg/01-52-54-00-10-00-03").read_text()
