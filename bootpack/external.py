"""The one way bootpack reaches outside itself: external programs and the Docker engine.

Every command is logged exactly as run at --verbose; a failure becomes a BootpackError that
names the program and shows the tail of its error output, so the user sees why without a
traceback.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import docker
import docker.errors

from .errors import BootpackError
from .progress import SILENT, Progress

TAIL = 3000


def _tail(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "").strip()[-TAIL:]


def need(program: str, package: str) -> str:
    """Path of `program`, or an error naming the Debian package that ships it."""
    path = shutil.which(program)
    if path is None:
        raise BootpackError(f"{program} not found; install Debian's `{package}` package "
                            f"(apt-get install {package}) or run scripts/install")
    return path


def run(command: Sequence[str | Path], *, progress: Progress = SILENT, what: str | None = None,
        cwd: Path | None = None, env: Mapping[str, str] | None = None,
        stdout: int | None = subprocess.PIPE,
        timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion; raise BootpackError with its stderr tail on failure."""
    argv = [str(c) for c in command]
    progress.detail("$ " + shlex.join(argv))
    try:
        result = subprocess.run(argv, cwd=cwd, env=None if env is None else dict(env),
                                stdout=stdout, stderr=subprocess.PIPE, timeout=timeout)
    except FileNotFoundError:
        raise BootpackError(f"{argv[0]} not found; run scripts/install") from None
    except subprocess.TimeoutExpired:
        raise BootpackError(f"{what or argv[0]} did not finish within {timeout:g} s: "
                            f"{shlex.join(argv)}") from None
    if result.returncode != 0:
        raise BootpackError(f"{what or argv[0]} failed (exit status {result.returncode}): "
                            f"{shlex.join(argv)}\n{_tail(result.stderr)}")
    return result


def run_fed(command: Sequence[str | Path], chunks: Iterable[bytes], *, progress: Progress = SILENT,
            what: str | None = None, cwd: Path | None = None,
            stdout: int | None = subprocess.DEVNULL) -> None:
    """Run a command that reads `chunks` on its standard input (e.g. tar reading a stream)."""
    argv = [str(c) for c in command]
    progress.detail("$ " + shlex.join(argv) + " < (stream)")
    # stderr goes to a file: a chatty program must not block on a full pipe while we feed it.
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=stdout,
                                    stderr=errors)
        except FileNotFoundError:
            raise BootpackError(f"{argv[0]} not found; run scripts/install") from None
        assert proc.stdin is not None
        broken = False
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
        except BrokenPipeError:
            broken = True
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        code = proc.wait()
        errors.seek(0)
        err = errors.read()
    if code != 0 or broken:
        raise BootpackError(f"{what or argv[0]} failed (exit status {code}): {shlex.join(argv)}\n"
                            f"{_tail(err)}")


def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise BootpackError(f"no Docker engine answers ({exc}); start dockerd or set DOCKER_HOST") from None
    return client
