"""Shared test fixtures (general ones only; feature tests keep theirs in their own modules)."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import threading
from collections.abc import Generator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    """Under CI (CI=true, as .ci/run runs) a skip is a failure: CI installs every program the
    tests drive, so a test that skips there (no QEMU, no Docker, no registry) proves nothing.
    On a developer's machine a missing tool still only skips."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI, where every tool must be present: {reason}"


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        from bootpack.external import docker_client

        docker_client()
    except Exception:
        return False
    return True


def session_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder for the whole test session. Under pytest-xdist each worker has its own base
    temp folder; their common parent is the session's, so the workers share this one."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def debian_base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """debian:bookworm-slim exists locally (made with mmdebstrap when no registry answers).

    Returns the image id."""
    if not docker_available():
        pytest.skip("no Docker engine answers")
    from bootpack.images.baseimage import ensure_debian_image

    # One worker makes it while the others wait, rather than all of them at once.
    with open(session_dir(tmp_path_factory, "locks") / "debian-base", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return ensure_debian_image()


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One bootpack build cache for the whole session (BOOTPACK_CACHE_DIR), so tests that build
    the same image share every step, across pytest-xdist workers too (the cache locks each
    step, so a step two workers need is built once)."""
    path = session_dir(tmp_path_factory, "bootpack-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BOOTPACK_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def boot_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab spec built once for every QEMU boot test (BIOS and UEFI): Debian's signed kernel,
    the marker initramfs, a 1 s menu whose default (`live`) is not its first entry (`other`), and
    host node1 (52:54:00:aa:bb:cc) with its own cmdline. Returns the bundle's tftpboot/."""
    import socket
    import time

    from bootpack.cli import main
    from tests.support.marker import write_artifacts
    from tests.support.specs import lab_data, write_spec

    folder = tmp_path_factory.mktemp("boot")
    data = lab_data()
    data["menu"]["timeout"] = 1
    # UEFI tests serve the tree over HTTP on this port (QEMU's user-net reaches the host's
    # loopback as 10.0.2.2); a free port, so concurrent sessions do not collide.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        data["server"]["http_port"] = probe.getsockname()[1]
    data["entries"][0]["secure_boot"] = True
    # A first menu entry that is not the default: the menu must honour menu.default.
    data["entries"].insert(0, {"name": "other", "image": "kdev", "root": "ramdisk",
                               "cmdline": "console=ttyS0,115200 entry=other"})
    spec = write_spec(folder, data, artifacts=False)
    write_artifacts(folder / "artifacts")
    started = time.monotonic()
    assert main(["-q", "build", str(spec), "--output", str(folder / "out")]) == 0
    print(f"build: {time.monotonic() - started:.1f} s")
    return folder / "out" / "tftpboot"


class _LoggingHandler(SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.requests.append(self.path)


@pytest.fixture(scope="session")
def http_log(boot_tree: Path) -> Iterator[list[str]]:
    """An HTTP server for the boot tree on the spec's http_port (loopback only; QEMU's user-net
    shows it to the VM as 10.0.2.2): lpxelinux (BIOS) and GRUB (UEFI, Secure Boot off) fetch
    kernels and initrds from it. Yields the list of paths it served."""
    port = json.loads((boot_tree.parent / "spec.json").read_text())["server"]["http_port"]
    requests: list[str] = []
    handler = type("Handler", (_LoggingHandler,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", port),
                                 functools.partial(handler, directory=str(boot_tree)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield requests
    finally:
        server.shutdown()
        server.server_close()
