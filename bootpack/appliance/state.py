"""What a running `bootpack serve` tells `bootpack health`: one typed file in the runtime dir.

`serve` writes it whenever a daemon starts, stops or restarts (atomically: a reader never sees
half a file); `health` reads it to probe exactly what the running appliance serves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import BootpackError

RUNTIME_DIR = Path("/run/bootpack")  # default runtime dir; BOOTPACK_RUNTIME_DIR overrides it
RUNTIME_DIR_ENV = "BOOTPACK_RUNTIME_DIR"
STATE_FILE = "state.json"
DEFAULT_STATUS_PORT = 8067  # the status site, on 127.0.0.1 inside the appliance (nginx proxies)

DaemonStatus = Literal["starting", "running", "down", "stopped"]


def default_runtime_dir() -> Path:
    return Path(os.environ.get(RUNTIME_DIR_ENV) or RUNTIME_DIR)


class DaemonState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    state: DaemonStatus
    pid: int | None
    restarts: int
    last_exit: int | None


class ServeState(BaseModel):
    """The served network, what to probe, and every daemon's state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pid: int  # of `bootpack serve`
    bundle: str
    digest: str  # the bundle digest
    interface: str
    address: str
    subnet: str
    mode: str
    http_base: str
    loader: str  # the first file a client fetches over TFTP, for the TFTP probe
    kernel: str | None  # a kernel path under the HTTP root, for the HTTP probe
    exports: tuple[str, ...]  # the shared (read-only) exports, for the NFS probe
    daemons: dict[str, DaemonState] = {}
    status_url: str | None = None  # the status site's base (None: tracking is off)

    def write(self, runtime: Path) -> None:
        path = runtime / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def read(cls, runtime: Path) -> ServeState:
        path = runtime / STATE_FILE
        try:
            return cls.model_validate_json(path.read_text())
        except FileNotFoundError:
            raise BootpackError(f"{path}: not found; is `bootpack serve` running "
                                "(with this --runtime-dir)?") from None
        except (OSError, ValidationError) as exc:
            raise BootpackError(f"{path}: unreadable ({exc}); restart `bootpack serve` with "
                                "this bootpack") from None
