"""Cross-field checks: each a small named function that returns fix-it messages.

The model validates each value on its own; these rules look across sections (does the host's
entry exist? is its address inside the subnet?). Every message names the culprit by its TOML
path (or by `serve`'s flag, see `Site.origin`) and says what to change. `run_checks` runs them
all so the user sees every problem at once; `build` and `serve` run the same set.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from .files import NOT_FOUND, input_file_problem
from .model import GRUB_UNSAFE_CMDLINE, Architecture, Image, Spec, chain_architecture
from .site import Site

# A check sees the spec and the network it is served on: the spec's own for `validate` and
# `build`, the runtime network for `serve`.
Check = Callable[[Spec, Site], Iterable[str]]


def _duplicates(values: Iterable[tuple[int, str]]) -> Iterable[tuple[int, int, str]]:
    seen: dict[str, int] = {}
    for index, value in values:
        if value in seen:
            yield seen[value], index, value
        else:
            seen[value] = index


def unique_entry_names(spec: Spec, site: Site) -> Iterable[str]:
    for first, again, name in _duplicates(enumerate(e.name for e in spec.entries)):
        yield (f"entries[{again}].name: {name!r} is already used by entries[{first}]; "
               "give each entry its own name")


def unique_host_names(spec: Spec, site: Site) -> Iterable[str]:
    for first, again, name in _duplicates(enumerate(h.name for h in spec.hosts)):
        yield (f"hosts[{again}].name: {name!r} is already used by hosts[{first}]; "
               "give each host its own name")


def unique_host_macs(spec: Spec, site: Site) -> Iterable[str]:
    # MACs are normalised to lower case by the model, so this compares case-insensitively.
    for first, again, mac in _duplicates(enumerate(h.mac for h in spec.hosts)):
        yield f"hosts[{again}].mac: {mac!r} is already used by hosts[{first}]; a MAC names one host"


def unique_host_ips(spec: Spec, site: Site) -> Iterable[str]:
    ips = ((i, str(h.ip)) for i, h in enumerate(spec.hosts) if h.ip is not None)
    for first, again, ip in _duplicates(ips):
        yield f"hosts[{again}].ip: {ip!r} is already used by hosts[{first}]; give each host its own"


def dhcp_mode_has_what_it_needs(spec: Spec, site: Site) -> Iterable[str]:
    o = site.origin
    if site.mode in ("server", "proxy") and site.subnet is None:
        yield f"{o.subnet}: {o.mode} = {site.mode!r} needs the client subnet, e.g. '10.0.2.0/24'"
    if site.mode == "server" and site.range is None:
        yield (f"{o.range}: {o.mode} = 'server' needs a dynamic pool, e.g. "
               f"['10.0.2.100', '10.0.2.200'] (or set {o.mode} = 'proxy')")


def _host_address(address: IPv4Address, subnet: IPv4Network) -> bool:
    return address in subnet and address not in (subnet.network_address, subnet.broadcast_address)


def range_inside_subnet(spec: Spec, site: Site) -> Iterable[str]:
    o = site.origin
    if site.range is None:
        return
    first, last = site.range
    if first > last:
        yield f"{o.range}: ['{first}', '{last}'] is reversed; put the lower address first"
    if site.subnet is not None:
        for address in (first, last):
            if address not in site.subnet:
                yield (f"{o.range}: '{address}' is outside {o.subnet} '{site.subnet}'; "
                       "move the range into the subnet")
            elif not _host_address(address, site.subnet):
                yield (f"{o.range}: '{address}' is the network or broadcast address of "
                       f"'{site.subnet}'; use host addresses only")


def server_inside_subnet(spec: Spec, site: Site) -> Iterable[str]:
    o = site.origin
    if site.mode == "server" and site.subnet is not None and site.address not in site.subnet:
        yield (f"{o.address}: '{site.address}' is outside {o.subnet} '{site.subnet}'; "
               "clients could not reach it. Use an address in the subnet")


def _special_address(address: IPv4Address, site: Site) -> str | None:
    """'the network address of dhcp.subnet '10.0.2.0/24'' when address cannot be a machine's."""
    o, subnet = site.origin, site.subnet
    if subnet is None or address not in subnet or subnet.prefixlen >= 31:
        return None
    if address == subnet.network_address:
        return f"the network address of {o.subnet} '{subnet}'"
    if address == subnet.broadcast_address:
        return f"the broadcast address of {o.subnet} '{subnet}'"
    return None


def server_is_a_host_address(spec: Spec, site: Site) -> Iterable[str]:
    special = _special_address(site.address, site)
    if special is not None:
        yield (f"{site.origin.address}: '{site.address}' is {special}; no machine can use it. "
               "Give the server's own address")


def server_outside_pool(spec: Spec, site: Site) -> Iterable[str]:
    if site.mode == "server" and _in_range(site, site.address):
        assert site.range is not None
        yield (f"{site.origin.address}: '{site.address}' is the server's own address but lies in "
               f"the DHCP pool {site.range[0]}-{site.range[1]}, which could lease it to a client; "
               f"move it out of {site.origin.range}")


def router_inside_subnet(spec: Spec, site: Site) -> Iterable[str]:
    o = site.origin
    if site.router is not None and site.subnet is not None and site.router not in site.subnet:
        yield f"{o.router}: '{site.router}' is outside {o.subnet} '{site.subnet}'"
    special = None if site.router is None else _special_address(site.router, site)
    if special is not None:
        yield f"{o.router}: '{site.router}' is {special}; give the gateway's own address"


def _in_range(site: Site, address: IPv4Address) -> bool:
    return site.range is not None and site.range[0] <= address <= site.range[1]


def host_ips_fit_the_network(spec: Spec, site: Site) -> Iterable[str]:
    o, subnet = site.origin, site.subnet
    for i, host in enumerate(spec.hosts):
        if host.ip is None or host.name in site.dropped_hosts:
            continue
        if subnet is not None and host.ip not in subnet:
            yield (f"hosts[{i}].ip: '{host.ip}' is outside {o.subnet} '{subnet}'; "
                   "use an address in the subnet")
        elif _in_range(site, host.ip):
            yield (f"hosts[{i}].ip: '{host.ip}' is inside {o.range}; DHCP could lease it to "
                   "another machine. Pick a fixed address outside the range")
        if host.ip == site.address:
            yield f"hosts[{i}].ip: '{host.ip}' is the server's own address"


def host_ips_are_host_addresses(spec: Spec, site: Site) -> Iterable[str]:
    """A fixed address must be usable by a machine: not the subnet's network or broadcast
    address, not the router's."""
    for i, host in enumerate(spec.hosts):
        if host.ip is None or host.name in site.dropped_hosts:
            continue
        special = _special_address(host.ip, site)
        if special is not None:
            yield (f"hosts[{i}].ip: '{host.ip}' is {special}; no machine can use it. Pick a host "
                   "address inside the subnet")
        elif host.ip == site.router:
            yield (f"hosts[{i}].ip: '{host.ip}' is the router's address ({site.origin.router}); "
                   "give the host its own address")


def _not_one_of(what: str, name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? Otherwise " if close else ""
    return f"{name!r} is not {what}; {hint}use one of {names}"


def menu_default_exists(spec: Spec, site: Site) -> Iterable[str]:
    names = [e.name for e in spec.entries]
    if spec.menu.default is not None and spec.menu.default not in names:
        yield f"menu.default: {_not_one_of('an entry', spec.menu.default, names)}"


def host_entries_exist(spec: Spec, site: Site) -> Iterable[str]:
    names = [e.name for e in spec.entries]
    for i, host in enumerate(spec.hosts):
        if host.entry is not None and host.entry not in names:
            yield f"hosts[{i}].entry: {_not_one_of('an entry', host.entry, names)}"


def entry_images_exist(spec: Spec, site: Site) -> Iterable[str]:
    names = sorted(spec.images)
    for i, entry in enumerate(spec.entries):
        if entry.root == "local":
            if entry.image is not None:
                yield (f"entries[{i}].image: root = 'local' boots the local disk and loads no "
                       f"image; remove image = {entry.image!r} or choose another root")
            continue
        if entry.image is None:
            yield (f"entries[{i}].image: entry {entry.name!r} with root = {entry.root!r} needs an "
                   f"image; use one of {names} or add an [images.NAME] section")
        elif entry.image not in spec.images:
            yield (f"entries[{i}].image: {_not_one_of('an image', entry.image, names)}; "
                   f"or add an [images.{entry.image}] section")


def images_have_one_source(spec: Spec, site: Site) -> Iterable[str]:
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
            for key in ("packages", "overlay", "drivers"):
                if getattr(image, key):
                    yield (f"{where}.{key}: only used with 'from' or 'dockerfile' images; remove "
                           "it or build the image from a container image")
            # A value, not "was it set": bundle.json's spec.json carries every default.
            for key in ("squashfs_compression", "ramdisk_compression"):
                if getattr(image, key) != Image.model_fields[key].default:
                    yield (f"{where}.{key}: only used with 'from' or 'dockerfile' images "
                           "(bootpack packs their roots; given files are served as they are); "
                           "remove it")


def root_modes_have_what_they_need(spec: Spec, site: Site) -> Iterable[str]:
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


def writable_roots_are_nfs_hosts(spec: Spec, site: Site) -> Iterable[str]:
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


def host_chains_are_carried(spec: Spec, site: Site) -> Iterable[str]:
    for index, host in enumerate(spec.hosts):
        if host.chain is not None and host.chain not in spec.loaders.chains:
            yield (f"hosts[{index}].chain: {host.chain!r} is not in loaders.chains "
                   f"{spec.loaders.chains!r}; add it there or drop the host's chain")


def host_architectures_agree(spec: Spec, site: Site) -> Iterable[str]:
    """A host boots one architecture: its own, its forced chain's and its entry's must agree."""
    names = {e.name for e in spec.entries}
    for i, host in enumerate(spec.hosts):
        claims: list[tuple[str, Architecture]] = []  # (what says so, architecture)
        if host.architecture is not None:
            claims.append((f"hosts[{i}].architecture", host.architecture))
        if host.chain is not None:
            claims.append((f"its chain {host.chain!r}", chain_architecture(host.chain)))
        if host.entry is not None and host.entry in names:
            entry = spec.entry(host.entry)
            entry_arch = spec.entry_architecture(entry)
            if entry_arch is not None:
                claims.append((f"its entry {entry.name!r} (images.{entry.image})", entry_arch))
        for (what, one), (other, another) in itertools.pairwise(claims):
            if one != another:
                yield (f"hosts[{i}] ({host.name}): {what} is {one} but {other} is {another}; "
                       "a machine boots one architecture: point the host at an entry whose "
                       "image has its architecture, or fix its architecture or chain")
                break
        arch = spec.host_architecture(host)
        if host.entry is None and arch is not None and spec.architecture_default(arch) is None:
            yield (f"hosts[{i}] ({host.name}): no entry boots on {arch}; add one whose image has "
                   f"architecture = {arch!r}, or give the host an entry")


def architectures_have_chains(spec: Spec, site: Site) -> Iterable[str]:
    """Every architecture an entry needs has a chain, and every chain has an entry to boot."""
    chains = spec.loaders.chains
    carried = {chain_architecture(c) for c in chains}
    for i, entry in enumerate(spec.entries):
        arch = spec.entry_architecture(entry)
        if arch is not None and arch not in carried:
            yield (f"entries[{i}] ({entry.name}): images.{entry.image} is {arch} but "
                   f"loaders.chains {chains!r} boots no {arch} machine; add "
                   f"{'uefi-arm64' if arch == 'arm64' else 'uefi'!r} to loaders.chains")
    for chain in chains:
        arch = chain_architecture(chain)
        if not spec.architecture_entries(arch):
            yield (f"loaders.chains: {chain!r} boots {arch} machines but no entry has an {arch} "
                   f"image; add such an entry or drop {chain!r}")


def cmdlines_suit_every_chain(spec: Spec, site: Site) -> Iterable[str]:
    if "uefi" not in spec.loaders.chains and "uefi-arm64" not in spec.loaders.chains:
        return
    owners = [(f"entries[{i}]", e.cmdline) for i, e in enumerate(spec.entries)]
    owners += [(f"hosts[{i}]", h.cmdline) for i, h in enumerate(spec.hosts)]
    for where, cmdline in owners:
        if any(c in cmdline for c in GRUB_UNSAFE_CMDLINE):
            yield (f"{where}.cmdline: {cmdline!r} holds a quote or backslash, which GRUB (the uefi "
                   "chain) would pass to the kernel escaped; drop them, or set loaders.chains = "
                   "['bios'] if no UEFI machine boots this bundle")


def texts_suit_ipxe(spec: Spec, site: Site) -> Iterable[str]:
    """iPXE scripts (the ipxe chain, BIOS iPXE ROMs) carry command lines, labels and the title."""
    if not spec.ipxe_scripts:
        return
    who = " and ".join((["the ipxe chain"] if "ipxe" in spec.loaders.chains else [])
                       + (["BIOS clients whose PXE ROM is iPXE"] if spec.bios_ipxe_scripts else []))
    fix = " and ".join((["remove 'ipxe' from loaders.chains"] if "ipxe" in spec.loaders.chains
                       else []) + (["set loaders.bios_ipxe = false (those clients then get "
                                    "plain pxelinux.0)"] if spec.bios_ipxe_scripts else []))
    for where, text in spec.ipxe_unsafe_texts():
        yield (f"{where}: {text!r} holds ${{, which iPXE would expand as a setting (iPXE scripts "
               f"serve {who}); drop it, or {fix}")


CHECKS: tuple[Check, ...] = (
    unique_entry_names,
    unique_host_names,
    unique_host_macs,
    unique_host_ips,
    dhcp_mode_has_what_it_needs,
    range_inside_subnet,
    server_inside_subnet,
    server_is_a_host_address,
    server_outside_pool,
    router_inside_subnet,
    host_ips_fit_the_network,
    host_ips_are_host_addresses,
    menu_default_exists,
    host_entries_exist,
    entry_images_exist,
    images_have_one_source,
    root_modes_have_what_they_need,
    writable_roots_are_nfs_hosts,
    host_chains_are_carried,
    host_architectures_agree,
    architectures_have_chains,
    cmdlines_suit_every_chain,
    texts_suit_ipxe,
)


def run_checks(spec: Spec, site: Site | None = None) -> list[str]:
    """Every cross-field problem of the spec served on `site` (default: the spec's own network),
    in a stable order."""
    site = site or Site.from_spec(spec)
    return [message for check in CHECKS for message in check(spec, site)]


def missing_files(spec: Spec, base: Path) -> list[str]:
    """Input files the spec names that are missing or not of their kind (kernel, initrd, ...),
    relative to the spec's folder."""
    problems = []
    for name, image in spec.images.items():
        for key in ("kernel", "initrd", "squashfs", "dockerfile"):
            value = getattr(image, key)
            if value is None:
                continue
            problem = input_file_problem(base / value, key, image.architecture)
            if problem == NOT_FOUND:
                problems.append(f"images.{name}.{key}: file {value!r} not found (looked at "
                                f"{base / value}); fix the path, which is relative to the spec file")
            elif problem is not None:
                problems.append(f"images.{name}.{key}: {value!r} {problem}")
        if image.overlay is not None:
            folder = base / image.overlay
            if not folder.is_dir():
                problems.append(
                    f"images.{name}.overlay: folder {image.overlay!r} not found (looked at "
                    f"{folder}); fix the path, which is relative to the spec file")
    return problems
