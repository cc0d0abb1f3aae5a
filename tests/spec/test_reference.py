"""The docs come from the model: README reference, specs/schema.json and specs/reference.toml."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bootpack.spec import parse_spec
from bootpack.spec.model import Spec
from bootpack.spec.reference import SECTIONS, json_schema, readme_with_reference

TOP = Path(__file__).resolve().parents[2]


def test_readme_reference_is_current() -> None:
    readme = (TOP / "README.md").read_text()
    assert readme_with_reference(readme) == readme, "run: python -m bootpack.spec.reference"


def test_schema_file_is_current() -> None:
    assert json.loads((TOP / "specs/schema.json").read_text()) == json_schema(), (
        "run: python -m bootpack.spec.reference")


def _keys(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def _used(data: Any) -> set[str]:
    if isinstance(data, dict):
        return set(data)
    return set().union(*(set(item) for item in data))


def test_reference_spec_is_valid_and_uses_every_key() -> None:
    data = tomllib.loads((TOP / "specs/reference.toml").read_text())
    parse_spec(data)
    assert set(data) == _keys(Spec)
    for header, model in SECTIONS:
        section = header.strip("[]").split(".")[0]
        value = data[section]
        used = set().union(*(set(v) for v in value.values())) if section == "images" else _used(value)
        assert _keys(model) == used, f"{header}: reference.toml misses {_keys(model) - used}"
