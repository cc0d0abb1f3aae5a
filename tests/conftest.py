"""Shared test fixtures (general ones only; feature tests keep theirs in their own modules)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        from bootpack.build.baseimage import docker_client

        docker_client()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def debian_base_image() -> str:
    """debian:bookworm-slim exists locally (made with mmdebstrap when no registry answers).

    Returns the image id."""
    if not docker_available():
        pytest.skip("no Docker engine answers")
    from bootpack.build.baseimage import ensure_debian_image

    return ensure_debian_image()


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One bootpack build cache for the whole session (BOOTPACK_CACHE_DIR), so tests that build
    the same image share every step."""
    path = tmp_path_factory.mktemp("bootpack-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BOOTPACK_CACHE_DIR", str(path))
        yield path
