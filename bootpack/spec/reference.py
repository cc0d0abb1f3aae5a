"""Docs and JSON Schema generated from the spec model (so they cannot drift from it)."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel

from .model import Bundle, Dhcp, Entry, Host, Image, Menu, Server, Spec

# Section -> (model, TOML header as the user writes it), in the order a spec reads.
SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("[bundle]", Bundle),
    ("[server]", Server),
    ("[dhcp]", Dhcp),
    ("[menu]", Menu),
    ("[images.NAME]", Image),
    ("[[entries]]", Entry),
    ("[[hosts]]", Host),
)


def json_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://bootpack.dev/schema/spec-1.json"
    return schema


def _type_name(annotation: Any) -> str:
    text = str(annotation)
    for old, new in (("typing.", ""), ("ipaddress.", ""), ("pathlib.", ""), ("NoneType", "None"),
                     ("<class '", ""), ("'>", "")):
        text = text.replace(old, new)
    if typing.get_origin(annotation) is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    return text


def markdown_reference() -> str:
    """The README's spec reference: one table per section, straight from the model."""
    out = ["Top level: `schema = 1` (required; the spec format version).\n"]
    for header, model in SECTIONS:
        doc = (model.__doc__ or "").strip().splitlines()[0]
        out.append(f"\n#### `{header}`\n\n{doc}\n\n| key | type | default | meaning |\n|---|---|---|---|\n")
        for name, info in model.model_fields.items():
            key = info.alias or name
            if info.is_required():
                default = "required"
            elif info.default_factory is not None:
                default = "`[]`" if info.default_factory is list else "`{}`"
            else:
                default = "-" if info.default is None else f"`{info.default!r}`".replace("'", '"')
            out.append(f"| `{key}` | {_type_name(info.annotation)} | {default} | "
                       f"{info.description or ''} |\n")
    return "".join(out)
