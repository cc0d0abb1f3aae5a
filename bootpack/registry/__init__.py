"""Bundles and appliance images in an OCI registry: the artifact format, push, pull, inspect.

Layout of a repository REF (docs/registry.md has the user's view):

    REF:VERSION             bundle artifact (artifactType application/vnd.bootpack.bundle.v1)
    REF:latest              bundle artifact most recently pushed
    REF:VERSION-appliance   appliance image serving that bundle (a normal Docker image)
    REF:latest-appliance    appliance image most recently pushed

This package knows registries and Docker images, not how bundles are built or baked: it never
imports the compiler, the spec or the appliance. `bootpack push` as a whole (build, bake, push
both, move the `latest` tags) is bootpack.release.
"""

from __future__ import annotations

from .client import connect
from .inspect import inspect, inspect_table
from .pull import fetch
from .reference import parse_reference

__all__ = ["connect", "fetch", "inspect", "inspect_table", "parse_reference"]
