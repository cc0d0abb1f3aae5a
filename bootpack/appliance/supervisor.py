"""Process supervision for `bootpack serve`: start daemons in order, restart them with backoff.

Each daemon runs in the foreground in its own process group; its stdout and stderr go to our
stdout one line at a time, prefixed with the service name. A daemon that exits is started again
after a delay that doubles on each quick crash (1 s, 2 s, 4 s ... 30 s) and resets once it has
stayed up for a while. `stop()` (SIGTERM/SIGINT in `serve`) sends SIGTERM to every daemon and
SIGKILL to whatever is still alive after the grace period, so everything ends within 10 s.

After every change the supervisor hands its view (per daemon: running or down, pid, restarts)
to `on_change`; `serve` writes it into the state file that `bootpack health` reads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from .runtime import Daemon
from .state import DaemonState, DaemonStatus

STOP_GRACE = 7.0  # seconds between SIGTERM and SIGKILL; the whole stop stays under 10 s
STABLE_AFTER = 30.0  # a daemon up this long has its backoff reset


class Output:
    """Line-prefixed, thread-safe writer on stdout. Every daemon's line passes here; `taps`
    (e.g. the boot timeline's parser) see each (service, line) after it is written."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()
        self.width = 8
        self.taps: list[Callable[[str, str], None]] = []
        # (service, line) -> True: the taps see the line, the log does not (debug output turned on
        # only for the taps, e.g. bootlog.is_tracking_noise)
        self.hide: Callable[[str, str], bool] = lambda name, text: False

    def line(self, name: str, text: str) -> None:
        if not self.hide(name, text):
            with self.lock:
                self.stream.write(f"{name:<{self.width}}| {text.rstrip()}\n")
                self.stream.flush()
        for tap in self.taps:
            try:
                tap(name, text)
            except Exception as exc:  # a tap must never take the daemons' output down
                with self.lock:
                    self.stream.write(f"{'bootpack':<{self.width}}| tap failed on a {name} line: "
                                      f"{exc!r}\n")


@dataclass
class _Proc:
    spec: Daemon
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    delay: float = 0.0
    next_start: float = 0.0
    state: DaemonStatus = "starting"
    last_exit: int | None = None
    readers: list[threading.Thread] = field(default_factory=list)


class Supervisor:
    def __init__(self, services: tuple[Daemon, ...] | list[Daemon], *,
                 output: Output | None = None,
                 on_change: Callable[[dict[str, DaemonState]], None] | None = None,
                 first_delay: float | None = None, max_delay: float = 30.0,
                 env: dict[str, str] | None = None) -> None:
        self.procs = [_Proc(spec=s) for s in services]
        self.out = output or Output()
        self.on_change = on_change
        env_delay = os.environ.get("BOOTPACK_RESTART_DELAY")
        self.first_delay = first_delay if first_delay is not None else float(env_delay or 1.0)
        self.max_delay = max_delay
        self.env = env
        self._stop = threading.Event()
        self.out.width = max([8, *(len(s.name) for s in services)])

    # -- public ---------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, poll: float = 0.2) -> int:
        """Start everything, supervise until stop(), then stop everything. Returns 0."""
        for proc in self.procs:
            if self.stopping:
                break
            self._wait_for(proc.spec.after)
            self._start(proc)
        self._write_state()
        while not self._stop.wait(poll):
            changed = False
            now = time.monotonic()
            for proc in self.procs:
                if proc.state == "running" and proc.popen is not None and proc.popen.poll() is not None:
                    code = proc.popen.returncode
                    up = now - proc.started
                    proc.delay = (self.first_delay if up >= STABLE_AFTER or proc.delay == 0
                                  else min(proc.delay * 2, self.max_delay))
                    proc.state, proc.last_exit, proc.next_start = "down", code, now + proc.delay
                    self.out.line("bootpack", f"{proc.spec.name} exited with status {code} after "
                                  f"{up:.1f} s; restarting in {proc.delay:.0f} s")
                    changed = True
                elif proc.state == "down" and now >= proc.next_start:
                    proc.restarts += 1
                    self._start(proc)
                    self._restart_dependents(proc)
                    changed = True
            if changed:
                self._write_state()
        self._shutdown()
        return 0

    def state(self) -> dict[str, DaemonState]:
        return {p.spec.name: DaemonState(state=p.state, pid=p.popen.pid if p.popen else None,
                                         restarts=p.restarts, last_exit=p.last_exit)
                for p in self.procs}

    # -- internals ------------------------------------------------------------------------------
    def _wait_for(self, names: tuple[str, ...], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            if proc.spec.name in names and proc.spec.ready_path:
                while not os.path.exists(proc.spec.ready_path) and time.monotonic() < deadline:
                    if self._stop.wait(0.1):
                        return

    def _start(self, proc: _Proc) -> None:
        self.out.line("bootpack", f"starting {proc.spec.name}: {' '.join(proc.spec.argv)}")
        try:
            # Long-running daemons are supervised here; external.run is for programs that finish.
            popen = subprocess.Popen(
                list(proc.spec.argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        except OSError as exc:
            self.out.line("bootpack", f"cannot start {proc.spec.name}: {exc}")
            proc.delay = min(max(proc.delay * 2, self.first_delay), self.max_delay)
            proc.state, proc.next_start = "down", time.monotonic() + proc.delay
            return
        proc.popen, proc.started, proc.state = popen, time.monotonic(), "running"
        reader = threading.Thread(target=self._pump, args=(proc.spec.name, popen), daemon=True)
        reader.start()
        proc.readers.append(reader)

    def _restart_dependents(self, proc: _Proc) -> None:
        """A restarted service (rpcbind) loses what others registered with it (Ganesha's RPC
        programs): stop those so they start again after it."""
        for other in self.procs:
            if proc.spec.name in other.spec.after and other.state == "running" and other.popen:
                self._wait_for((proc.spec.name,))
                self.out.line("bootpack", f"restarting {other.spec.name} after {proc.spec.name}")
                self._signal(other, signal.SIGTERM)

    def _pump(self, name: str, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        for raw in iter(popen.stdout.readline, b""):
            self.out.line(name, raw.decode(errors="replace"))

    def _shutdown(self) -> None:
        alive = [p for p in self.procs if p.popen is not None and p.popen.poll() is None]
        for proc in reversed(alive):
            self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in alive:
            assert proc.popen is not None
            try:
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.out.line("bootpack", f"{proc.spec.name} ignored SIGTERM; killing it")
                self._signal(proc, signal.SIGKILL)
                proc.popen.wait()
        for proc in self.procs:
            proc.state = "stopped"
            for reader in proc.readers:
                reader.join(timeout=0.5)
        self._write_state()
        self.out.line("bootpack", "all services stopped")

    @staticmethod
    def _signal(proc: _Proc, sig: signal.Signals) -> None:
        assert proc.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, sig)

    def _write_state(self) -> None:
        if self.on_change is not None:
            self.on_change(self.state())
