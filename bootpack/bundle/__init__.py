"""A bundle: layout, typed manifest, verification, deterministic archive, atomic output."""

from .manifest import Bundle, BundleManifest

__all__ = ["Bundle", "BundleManifest"]
