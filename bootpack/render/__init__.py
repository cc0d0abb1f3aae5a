"""Pure renderers: (spec, site) -> {relative path: text}. No I/O, so tests are plain asserts."""

from __future__ import annotations

from ..bundle import layout
from ..spec.model import Spec
from ..spec.site import Site
from .dhcp import render_dhcp
from .nfs import nfs_exports, render_exports, render_ganesha
from .pxelinux import render_pxelinux

__all__ = ["render_bundle_configs"]


def render_bundle_configs(spec: Spec, site: Site) -> dict[str, str]:
    """Every generated text file of a bundle, by path relative to the bundle directory."""
    files = {f"{layout.TFTP_DIR}/{p}": text for p, text in render_pxelinux(spec, site).items()}
    files.update({f"{layout.ETC_DIR}/{p}": text for p, text in render_dhcp(spec, site).items()})
    if nfs_exports(spec, site):
        files[f"{layout.ETC_DIR}/exports"] = render_exports(spec, site)
        files[f"{layout.ETC_DIR}/ganesha.conf"] = render_ganesha(spec, site)
    return files
