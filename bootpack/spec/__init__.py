"""The spec: pydantic models, loading with clear errors, named cross-checks, JSON Schema."""

from .load import LoadedSpec, load_spec, parse_spec, spec_digest
from .model import Bundle, Dhcp, Entry, Host, Image, Menu, Server, Spec

__all__ = [
    "Bundle", "Dhcp", "Entry", "Host", "Image", "LoadedSpec", "Menu", "Server", "Spec",
    "load_spec", "parse_spec", "spec_digest",
]
