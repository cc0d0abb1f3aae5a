"""Reading a spec file: TOML syntax errors with file:line:column, schema errors with TOML paths."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import BootpackError
from ..files import sha256_bytes
from .checks import missing_files, run_checks
from .model import Spec

_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec plus the folder its relative paths are relative to."""

    spec: Spec
    path: Path

    @property
    def base(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        return (self.base / relative).resolve()

    @property
    def digest(self) -> str:
        return spec_digest(self.spec)


def spec_digest(spec: Spec) -> str:
    """sha256 of the spec's canonical JSON: comments, key order and formatting do not count."""
    canonical = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True,
                           separators=(",", ":"))
    return sha256_bytes(canonical.encode())


def toml_path(loc: tuple[int | str, ...]) -> str:
    """('hosts', 1, 'mac') -> 'hosts[1].mac'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(error: Any) -> str:
    loc = tuple(p for p in error["loc"] if p not in ("function-after[_safe_name(), str]",))
    path = toml_path(loc)
    kind = error["type"]
    if kind == "value_error":
        message = error["msg"].removeprefix("Value error, ")
        if message.startswith("'") or message.startswith("is "):
            return f"{path}: {message}"
        return f"{path}: {message}"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "extra_forbidden":
        return f"{path}: unknown key; check its spelling against `bootpack schema`"
    if kind == "literal_error" and loc == ("schema",):
        return f"schema: {error['input']!r} is not supported; this bootpack reads schema = 1"
    return f"{path}: {error['input']!r}: {error['msg']}"


def parse_spec(data: dict[str, Any], source: str = "spec") -> Spec:
    """Validate TOML data into a Spec and run the cross-field checks (no file-system access)."""
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors()]
        raise BootpackError(_report(source, problems)) from None
    problems = run_checks(spec)
    if problems:
        raise BootpackError(_report(source, problems))
    return spec


def _report(source: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BootpackError(f"{path}: spec file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BootpackError(f"{path}: cannot read spec: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.match(str(exc))
        if match:
            raise BootpackError(
                f"{path}:{match['line']}:{match['col']}: TOML syntax error: {match['msg']}"
            ) from None
        raise BootpackError(f"{path}: TOML syntax error: {exc}") from None


def load_spec(path: Path, check_files: bool = True) -> LoadedSpec:
    """Read, validate and cross-check a spec file; optionally check the files it names exist."""
    path = Path(path)
    spec = parse_spec(read_toml(path), source=str(path))
    loaded = LoadedSpec(spec=spec, path=path.resolve())
    if check_files:
        problems = missing_files(spec, loaded.base)
        if problems:
            raise BootpackError(_report(str(path), problems))
    return loaded
