"""Cross-field checks: each a small named function that returns fix-it messages.

The model validates each value on its own; these rules look across sections (does the host's
entry exist? is its address inside the subnet?). Every message names the culprit by its TOML
path and says what to change. `run_checks` runs them all so the user sees every problem at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Address
from pathlib import Path

from .model import Spec

Check = Callable[[Spec], Iterable[str]]


def _duplicates(values: Iterable[tuple[int, str]]) -> Iterable[tuple[int, int, str]]:
    seen: dict[str, int] = {}
    for index, value in values:
        if value in seen:
            yield seen[value], index, value
        else:
            seen[value] = index


def unique_entry_names(spec: Spec) -> Iterable[str]:
    for first, again, name in _duplicates(enumerate(e.name for e in spec.entries)):
        yield (f"entries[{again}].name: {name!r} is already used by entries[{first}]; "
               "give each entry its own name")


def unique_host_names(spec: Spec) -> Iterable[str]:
    for first, again, name in _duplicates(enumerate(h.name for h in spec.hosts)):
        yield (f"hosts[{again}].name: {name!r} is already used by hosts[{first}]; "
               "give each host its own name")


def unique_host_macs(spec: Spec) -> Iterable[str]:
    # MACs are normalised to lower case by the model, so this compares case-insensitively.
    for first, again, mac in _duplicates(enumerate(h.mac for h in spec.hosts)):
        yield f"hosts[{again}].mac: {mac!r} is already used by hosts[{first}]; a MAC names one host"


def unique_host_ips(spec: Spec) -> Iterable[str]:
    ips = ((i, str(h.ip)) for i, h in enumerate(spec.hosts) if h.ip is not None)
    for first, again, ip in _duplicates(ips):
        yield f"hosts[{again}].ip: {ip!r} is already used by hosts[{first}]; give each host its own"


def dhcp_mode_has_what_it_needs(spec: Spec) -> Iterable[str]:
    dhcp = spec.dhcp
    if dhcp.mode in ("server", "proxy") and dhcp.subnet is None:
        yield f"dhcp.subnet: dhcp.mode = {dhcp.mode!r} needs the client subnet, e.g. '10.0.2.0/24'"
    if dhcp.mode == "server" and dhcp.range is None:
        yield ("dhcp.range: dhcp.mode = 'server' needs a dynamic pool, e.g. "
               "['10.0.2.100', '10.0.2.200'] (or set dhcp.mode = 'proxy')")


def range_inside_subnet(spec: Spec) -> Iterable[str]:
    dhcp = spec.dhcp
    if dhcp.range is None:
        return
    first, last = dhcp.range
    if first > last:
        yield f"dhcp.range: ['{first}', '{last}'] is reversed; put the lower address first"
    if dhcp.subnet is not None:
        for address in (first, last):
            if address not in dhcp.subnet:
                yield (f"dhcp.range: '{address}' is outside dhcp.subnet '{dhcp.subnet}'; "
                       "move the range into the subnet")
            elif address in (dhcp.subnet.network_address, dhcp.subnet.broadcast_address):
                yield (f"dhcp.range: '{address}' is the network or broadcast address of "
                       f"'{dhcp.subnet}'; use host addresses only")


def server_inside_subnet(spec: Spec) -> Iterable[str]:
    dhcp = spec.dhcp
    if dhcp.mode == "server" and dhcp.subnet is not None and spec.server.address not in dhcp.subnet:
        yield (f"server.address: '{spec.server.address}' is outside dhcp.subnet '{dhcp.subnet}'; "
               "clients could not reach it. Use an address in the subnet")


def router_inside_subnet(spec: Spec) -> Iterable[str]:
    dhcp = spec.dhcp
    if dhcp.router is not None and dhcp.subnet is not None and dhcp.router not in dhcp.subnet:
        yield f"dhcp.router: '{dhcp.router}' is outside dhcp.subnet '{dhcp.subnet}'"


def _in_range(spec: Spec, address: IPv4Address) -> bool:
    return spec.dhcp.range is not None and spec.dhcp.range[0] <= address <= spec.dhcp.range[1]


def host_ips_fit_the_network(spec: Spec) -> Iterable[str]:
    subnet = spec.dhcp.subnet
    for i, host in enumerate(spec.hosts):
        if host.ip is None:
            continue
        if subnet is not None and host.ip not in subnet:
            yield (f"hosts[{i}].ip: '{host.ip}' is outside dhcp.subnet '{subnet}'; "
                   "use an address in the subnet")
        elif _in_range(spec, host.ip):
            yield (f"hosts[{i}].ip: '{host.ip}' is inside dhcp.range; DHCP could lease it to "
                   "another machine. Pick a fixed address outside the range")
        if host.ip == spec.server.address:
            yield f"hosts[{i}].ip: '{host.ip}' is the server's own address"


def menu_default_exists(spec: Spec) -> Iterable[str]:
    names = [e.name for e in spec.entries]
    if spec.menu.default is not None and spec.menu.default not in names:
        yield f"menu.default: {spec.menu.default!r} is not an entry; use one of {names}"


def host_entries_exist(spec: Spec) -> Iterable[str]:
    names = [e.name for e in spec.entries]
    for i, host in enumerate(spec.hosts):
        if host.entry is not None and host.entry not in names:
            yield f"hosts[{i}].entry: {host.entry!r} is not an entry; use one of {names}"


def entry_images_exist(spec: Spec) -> Iterable[str]:
    names = sorted(spec.images)
    for i, entry in enumerate(spec.entries):
        if entry.root == "local":
            continue
        if entry.image is None:
            yield (f"entries[{i}].image: entry {entry.name!r} with root = {entry.root!r} needs an "
                   f"image; use one of {names} or add an [images.NAME] section")
        elif entry.image not in spec.images:
            yield (f"entries[{i}].image: {entry.image!r} is not an image; use one of {names} "
                   f"or add an [images.{entry.image}] section")


def images_have_one_source(spec: Spec) -> Iterable[str]:
    for name, image in spec.images.items():
        where = f"images.{name}"
        sources = [key for key, value in (("kernel", image.kernel), ("from", image.from_),
                                          ("dockerfile", image.dockerfile)) if value is not None]
        if not sources:
            yield (f"{where}: needs a source: 'kernel' (a path to the kernel file), 'from' (a "
                   "container image such as 'debian:bookworm-slim') or 'dockerfile' (a path)")
        elif len(sources) > 1:
            yield (f"{where}: {' and '.join(repr(s) for s in sources)} are both set; give exactly "
                   "one source: 'kernel' files, or 'from', or 'dockerfile'")
        if image.container:
            for key in ("initrd", "squashfs"):
                if getattr(image, key) is not None:
                    yield (f"{where}.{key}: bootpack builds it from the container image; remove "
                           f"{key!r} (or use 'kernel' files instead of a container image)")
        else:
            for key in ("packages", "overlay"):
                if getattr(image, key):
                    yield (f"{where}.{key}: only used with 'from' or 'dockerfile' images; remove "
                           "it or build the image from a container image")


def root_modes_have_what_they_need(spec: Spec) -> Iterable[str]:
    for i, entry in enumerate(spec.entries):
        image = spec.images.get(entry.image or "")
        if image is None:
            continue
        where = f"entries[{i}]"
        # A container image gets its initrd, squashfs and ramdisk built by bootpack.
        files = not image.container
        if files and entry.root == "ramdisk" and image.initrd is None:
            yield (f"{where}.root: 'ramdisk' uses the initrd as the root file system, but "
                   f"images.{entry.image} has no initrd; add images.{entry.image}.initrd")
        if files and entry.root == "live":
            if image.initrd is None:
                yield (f"{where}.root: 'live' needs a dracut initrd with the livenet module; "
                       f"add images.{entry.image}.initrd")
            if image.squashfs is None:
                yield (f"{where}.root: 'live' fetches a squashfs over HTTP; "
                       f"add images.{entry.image}.squashfs")
        if entry.root == "nfs" and spec.dhcp.subnet is None:
            yield (f"{where}.root: 'nfs' exports are limited to the client subnet; "
                   "set dhcp.subnet")
        if entry.root != "nfs" and entry.nfs_path is not None:
            yield f"{where}.nfs_path: only used with root = 'nfs'; remove it or set root = 'nfs'"


def writable_roots_are_nfs_hosts(spec: Spec) -> Iterable[str]:
    roots = {e.name: e.root for e in spec.entries}
    for i, host in enumerate(spec.hosts):
        if not host.writable_root:
            continue
        if host.ip is None:
            yield (f"hosts[{i}].writable_root: the writable export is limited to the host's "
                   f"address; set hosts[{i}].ip")
        entry = host.entry or spec.menu.default or spec.entries[0].name
        if entry in roots and roots[entry] != "nfs":
            yield (f"hosts[{i}].writable_root: only used when the host boots an entry with "
                   "root = 'nfs'; remove it or point hosts[].entry at an nfs entry")


CHECKS: tuple[Check, ...] = (
    unique_entry_names,
    unique_host_names,
    unique_host_macs,
    unique_host_ips,
    dhcp_mode_has_what_it_needs,
    range_inside_subnet,
    server_inside_subnet,
    router_inside_subnet,
    host_ips_fit_the_network,
    menu_default_exists,
    host_entries_exist,
    entry_images_exist,
    images_have_one_source,
    root_modes_have_what_they_need,
    writable_roots_are_nfs_hosts,
)


def host_chains_are_carried(spec: Spec) -> Iterable[str]:
    for index, host in enumerate(spec.hosts):
        if host.chain is not None and host.chain not in spec.loaders.chains:
            yield (f"hosts[{index}].chain: {host.chain!r} is not in loaders.chains "
                   f"{spec.loaders.chains!r}; add it there or drop the host's chain")


CHECKS = (*CHECKS, host_chains_are_carried)


def run_checks(spec: Spec) -> list[str]:
    """Every cross-field problem in the spec, in a stable order."""
    return [message for check in CHECKS for message in check(spec)]


def missing_files(spec: Spec, base: Path) -> list[str]:
    """Input files the spec names that do not exist (relative to the spec's folder)."""
    problems = []
    for name, image in spec.images.items():
        for key in ("kernel", "initrd", "squashfs"):
            value = getattr(image, key)
            if value is not None and not (base / value).is_file():
                problems.append(
                    f"images.{name}.{key}: file {value!r} not found (looked at {base / value}); "
                    "fix the path, which is relative to the spec file"
                )
        for key, is_kind, kind in (("dockerfile", Path.is_file, "file"),
                                   ("overlay", Path.is_dir, "folder")):
            value = getattr(image, key)
            if value is not None and not is_kind(base / value):
                problems.append(
                    f"images.{name}.{key}: {kind} {value!r} not found (looked at {base / value}); "
                    "fix the path, which is relative to the spec file"
                )
    return problems
