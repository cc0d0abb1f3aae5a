"""Progress and timing of long steps, on stderr.

On a terminal each running step shows a spinner; elsewhere (CI logs, pipes) it degrades to one
plain line per step. `--quiet` shows only errors; `--verbose` also shows the exact commands run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console

QUIET, NORMAL, VERBOSE = 0, 1, 2


class Progress:
    def __init__(self, level: int = NORMAL, console: Console | None = None) -> None:
        self.level = level
        # soft_wrap: a message is one line whatever the width, so a long path in a log or a
        # pasted error stays whole (the terminal wraps it for display).
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.timings: dict[str, float] = {}

    def info(self, message: str) -> None:
        if self.level >= NORMAL:
            self.console.print(message, markup=False)

    def detail(self, message: str) -> None:
        if self.level >= VERBOSE:
            self.console.print(f"  {message}", markup=False, style="dim")

    def warn(self, message: str) -> None:
        self.console.print(f"warning: {message}", markup=False, style="yellow")

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        """Time a step; show a spinner while it runs on a terminal, a line when done."""
        start = time.monotonic()
        live = self.level >= NORMAL and self.console.is_terminal
        with self.console.status(title) if live else contextlib.nullcontext():
            yield
        elapsed = time.monotonic() - start
        self.timings[title] = elapsed
        self.info(f"{title} ... done ({elapsed:.1f} s)")


SILENT = Progress(QUIET)
