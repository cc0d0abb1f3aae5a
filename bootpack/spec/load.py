"""Reading a spec file: TOML syntax errors with file:line:column, schema errors with TOML paths."""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import BootpackError
from ..files import sha256_bytes
from .checks import missing_files, run_checks
from .files import kind_of
from .model import Spec, _show

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


def _unwrap(annotation: Any) -> Any:
    """The type inside Annotated[...] and X | None."""
    while True:
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is typing.Annotated:
            annotation = args[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _field_type(loc: tuple[int | str, ...]) -> Any:
    """The declared type at a TOML path, e.g. ('hosts', 0) -> Host; None when there is none."""
    current: Any = Spec
    for part in loc:
        current = _unwrap(current)
        origin, args = typing.get_origin(current), typing.get_args(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            fields = {info.alias or name: info for name, info in current.model_fields.items()}
            if part not in fields:
                return None
            current = fields[part].annotation
        elif origin is list and isinstance(part, int):
            current = args[0]
        elif origin is dict and isinstance(part, str):
            current = args[1]
        elif origin is tuple and isinstance(part, int) and part < len(args):
            current = args[part]
        else:
            return None
    return _unwrap(current)


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    model = _field_type(loc)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [info.alias or name for name, info in model.model_fields.items()]
    return []


def did_you_mean(word: str, choices: list[str]) -> str:
    """' (did you mean 'address'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


_TYPE_WORDS = {"int_type": "an integer", "bool_type": "true or false", "string_type": "a string",
               "list_type": "a list", "dict_type": "a table", "model_type": "a table",
               "tuple_type": "a list", "literal_error": "one of the listed values"}


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    path = toml_path(loc)
    kind = error["type"]
    shown = _show(error.get("input"))
    if loc == ("schema",) and kind in ("literal_error", "value_error", "int_type"):
        return f"schema: {shown} is not supported; this bootpack reads schema = 1"
    if kind == "value_error":
        message = error["msg"].removeprefix("Value error, ")
        return f"{path}: {message}"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_keys(loc[:-1])
        hint = did_you_mean(key, known) or (
            f"; the keys here are {', '.join(known)}" if known else "")
        return f"{path}: unknown key{hint} (see `bootpack schema`)"
    value = error.get("input")
    if kind in ("int_type", "bool_type") and isinstance(value, str):
        return f"{path}: {shown} is a string; write {_TYPE_WORDS[kind]} without quotes"
    if kind == "string_type" and not isinstance(value, dict | list):
        return f"{path}: {shown} is not a string; write it in double quotes"
    if kind == "literal_error" and isinstance(value, str):
        choices = [str(a) for a in typing.get_args(_field_type(loc))]
        return f"{path}: {shown}: {error['msg']}{did_you_mean(value, choices)}"
    if kind in ("less_than_equal", "greater_than_equal", "less_than", "greater_than"):
        return f"{path}: {shown} is out of range: {error['msg'].lower()}"
    return f"{path}: {shown}: {error['msg']}"


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


SPEC_MAX_BYTES = 4 * 1024 * 1024  # a spec for thousands of hosts is far smaller


def read_toml(path: Path) -> dict[str, Any]:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files are read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BootpackError(f"{path}: spec file not found") from None
    except OSError as exc:
        raise BootpackError(f"{path}: cannot read spec: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise BootpackError(f"{path}: is {kind_of(mode)}, not a spec file; give the path "
                            "of a TOML file")
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(SPEC_MAX_BYTES + 1)
        except OSError as exc:
            raise BootpackError(f"{path}: cannot read spec: {exc.strerror or exc}") from None
    if len(raw) > SPEC_MAX_BYTES:
        raise BootpackError(f"{path}: larger than {SPEC_MAX_BYTES // 2**20} MB; this is not a "
                            "bootpack spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BootpackError(f"{path}: not UTF-8 text (byte {exc.start}); TOML files are "
                            "UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.match(str(exc))
        if match:
            raise BootpackError(
                f"{path}:{match['line']}:{match['col']}: TOML syntax error: {match['msg']}"
            ) from None
        raise BootpackError(f"{path}: TOML syntax error: {exc}") from None
    except RecursionError:
        raise BootpackError(f"{path}: nested too deeply; a bootpack spec nests a few "
                            "levels at most") from None
    except ValueError as exc:  # Python's int() refuses more than 4,300 digits
        huge = re.search(r"[0-9_]{4000,}", text)
        if huge is None:
            raise BootpackError(f"{path}: unreadable value: {exc}") from None
        line = text.count("\n", 0, huge.start()) + 1
        raise BootpackError(f"{path}:{line}: an integer of {len(huge[0])} digits; no spec value "
                            "is anywhere near that large") from None


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
