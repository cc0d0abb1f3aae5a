"""Pure renderers: (spec, site) -> {relative path: text}. No I/O, so tests are plain asserts."""

from __future__ import annotations

from ..bundle import layout
from ..spec.model import Spec
from ..spec.site import Site
from .dhcp import render_dhcp
from .grub import render_grub
from .ipxe import render_ipxe
from .nfs import nfs_exports, render_exports, render_ganesha
from .pxelinux import render_pxelinux

__all__ = ["render_bundle_configs", "render_loader_configs"]


def render_loader_configs(spec: Spec, site: Site) -> dict[str, str]:
    """Every boot loader's config for the chains the bundle carries, by path in the TFTP root."""
    files: dict[str, str] = {}
    if "bios" in spec.loaders.chains:
        files.update(render_pxelinux(spec, site))
    if "uefi" in spec.loaders.chains or "uefi-arm64" in spec.loaders.chains:
        files.update(render_grub(spec, site))
    if spec.ipxe_scripts:
        files.update(render_ipxe(spec, site))
    return files


def render_bundle_configs(spec: Spec, site: Site) -> dict[str, str]:
    """Every generated text file of a bundle, by path relative to the bundle directory."""
    files = {f"{layout.TFTP_DIR}/{p}": text for p, text in render_loader_configs(spec, site).items()}
    files.update({f"{layout.ETC_DIR}/{p}": text for p, text in render_dhcp(spec, site).items()})
    if nfs_exports(spec, site):
        files[f"{layout.ETC_DIR}/exports"] = render_exports(spec, site)
        files[f"{layout.ETC_DIR}/ganesha.conf"] = render_ganesha(spec, site)
    return files
