# ruff: noqa: E501  (tables of one case per line read better unwrapped)
"""Hostile and careless specs: every free-text field is typed, so nothing becomes configuration.

Each case is one of issue 9's reproductions: the spec is refused with the culprit's TOML path and
what to do, and nothing is rendered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bootpack.errors import BootpackError
from bootpack.spec import parse_spec
from tests.support.specs import lab_data

Data = dict[str, Any]


def refused(data: Data) -> str:
    with pytest.raises(BootpackError) as info:
        parse_spec(data, source="spec.toml")
    return str(info.value)


def setter(*path: Any) -> Callable[[Data, Any], None]:
    def put(data: Data, value: Any) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return put


def nfs_entry(data: Data, path: Any) -> None:
    data["entries"][0].update(root="nfs", nfs_path=path)


INJECTIONS = [
    # (what, where it goes, value, expected words)
    ("domain", setter("dhcp", "domain"), "lab.lan\ndhcp-script=/srv/evil.sh",
     "dhcp.domain: 'lab.lan\\ndhcp-script=/srv/evil.sh' is not a DNS domain name"),
    ("domain", setter("dhcp", "domain"), 'lab"; on commit { execute("/bin/sh"); } "',
     "dhcp.domain:"),
    ("domain", setter("dhcp", "domain"), "-lab.lan", "is not a DNS domain name"),
    ("domain", setter("dhcp", "domain"), "lab..lan", "is not a DNS domain name"),
    ("label", setter("entries", 0, "label"), "x\nLABEL evil\n  KERNEL evil",
     "entries[0].label: 'x\\nLABEL evil\\n  KERNEL evil' contains a newline"),
    ("label", setter("entries", 0, "label"), "x\rKERNEL evil", "contains a carriage return"),
    ("label", setter("entries", 0, "label"), "x\u2028y", "contains the character U+2028"),
    ("label", setter("entries", 0, "label"), "x" * 81, "entries[0].label: is 81 characters long"),
    ("cmdline", setter("entries", 0, "cmdline"), "quiet\n  KERNEL evil",
     "entries[0].cmdline: 'quiet\\n  KERNEL evil' contains a newline; a kernel command line is one "
     "line of printable ASCII"),
    ("cmdline", setter("hosts", 0, "cmdline"), "a\tb", "hosts[0].cmdline:"),
    ("cmdline", setter("hosts", 0, "cmdline"), "x" * 1025, "hosts[0].cmdline: is 1025 characters"),
    ("title", setter("menu", "title"), "Lab\nMENU HIDDEN", "menu.title: 'Lab\\nMENU HIDDEN' contains a newline"),
    ("title", setter("menu", "title"), "", "menu.title:"),
    ("nfs_path", nfs_entry, "/x *(rw,no_root_squash,insecure)",
     "entries[0].nfs_path: '/x *(rw,no_root_squash,insecure)' is not a clean absolute path"),
    ("nfs_path", nfs_entry, '/x";\n}\nEXPORT { Path = "/', "entries[0].nfs_path:"),
    ("nfs_path", nfs_entry, "/", "entries[0].nfs_path: '/' is the server's whole file system"),
    ("nfs_path", nfs_entry, "/srv/../etc", "is not a clean absolute path"),
    ("nfs_path", nfs_entry, "/srv/./x", "is not a clean absolute path"),
    ("nfs_path", nfs_entry, "/srv/a,b", "is not a clean absolute path"),
    ("nfs_path", nfs_entry, "/srv/a:b", "is not a clean absolute path"),
    ("nfs_path", nfs_entry, "/proc/self", "entries[0].nfs_path: '/proc/self' is under /proc"),
    ("nfs_path", nfs_entry, "relative/path", "is not a clean absolute path"),
    ("server.root", setter("server", "root"), "/srv/boot pack", "server.root:"),
    ("server.root", setter("server", "root"), "/", "server.root: '/' is the server's whole file system"),
    ("mac", setter("hosts", 0, "mac"), "52:54:00:aa:bb:01\n", "hosts[0].mac: '52:54:00:aa:bb:01\\n' is not a MAC"),
    ("mac", setter("hosts", 0, "mac"), "01:00:5e:00:00:01", "hosts[0].mac: '01:00:5e:00:00:01' is a multicast"),
    ("mac", setter("hosts", 0, "mac"), "ff:ff:ff:ff:ff:ff", "is the broadcast MAC address"),
    ("mac", setter("hosts", 0, "mac"), "00:00:00:00:00:00", "is the all-zero MAC address"),
    ("host name", setter("hosts", 0, "name"), "node1\n", "hosts[0].name: 'node1\\n' is not a usable host name"),
    ("host name", setter("hosts", 0, "name"), "5m", "is not a usable host name"),
    ("host name", setter("hosts", 0, "name"), "ignore", "is not a usable host name"),
    ("entry name", setter("entries", 0, "name"), "live\n", "entries[0].name: 'live\\n' is not a safe name"),
    ("version", setter("bundle", "version"), "1.0\n", "bundle.version: '1.0\\n' is not a usable version"),
    ("package", setter("images", "kdev", "packages"), ["curl\n"], "images.kdev.packages[0]: 'curl\\n'"),
    ("driver", setter("images", "kdev", "drivers"), ["sfc\" --add evil"],
     "images.kdev.drivers[0]: 'sfc\" --add evil' is not a kernel module name"),
    ("from", setter("images", "kdev", "from"), "debian\nRUN evil", "images.kdev.from: 'debian\\nRUN evil' is not a "
     "container image reference"),
    ("kernel path", setter("images", "kdev", "kernel"), "a\0b", "images.kdev.kernel: 'a\\x00b' contains a NUL"),
    ("description", setter("bundle", "description"), "a\x1b[2Jb", "bundle.description:"),
]


@pytest.mark.parametrize(("what", "put", "value", "expected"), INJECTIONS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(INJECTIONS)])
def test_free_text_that_could_become_configuration_is_refused(
        what: str, put: Callable[[Data, Any], None], value: Any, expected: str) -> None:
    data = lab_data()
    put(data, value)
    assert expected in refused(data)


def test_trailing_newline_mac_is_no_longer_a_different_host() -> None:
    data = lab_data()
    data["hosts"].append({"name": "node2", "mac": "52:54:00:AA:BB:CC\n", "ip": "10.0.2.51"})
    assert "hosts[1].mac:" in refused(data)


def test_legal_values_with_format_characters_are_accepted() -> None:
    # A quote and a backslash are fine in a menu title: the renderers quote them.
    data = lab_data()
    data["menu"]["title"] = 'Lab "A" \\ #1, 50% (x86)'
    data["entries"][0]["label"] = "Kernel ; under # test"
    data["bundle"]["description"] = "Two lines\nof description"
    assert parse_spec(data).menu.title == 'Lab "A" \\ #1, 50% (x86)'


STRICT = [
    (setter("schema"), True, "schema: True is not supported; this bootpack reads schema = 1"),
    (setter("schema"), "1", "schema: '1' is not supported"),
    (setter("menu", "timeout"), "5", "menu.timeout: '5' is a string; write an integer without quotes"),
    (setter("menu", "timeout"), 5.0, "menu.timeout: 5.0:"),
    (setter("menu", "timeout"), True, "menu.timeout: True:"),
    (setter("hosts", 0, "writable_root"), "yes", "hosts[0].writable_root: 'yes' is a string; write true "
     "or false without quotes"),
    (setter("hosts", 0, "writable_root"), 1, "hosts[0].writable_root: 1:"),
    (setter("server", "http_port"), "80", "server.http_port: '80' is a string"),
    (setter("entries", 0, "nfs_version"), True, "entries[0].nfs_version:"),
    (setter("entries", 0, "nfs_version"), "4", "entries[0].nfs_version:"),
    (setter("hosts", 0, "ip"), 167772210, "hosts[0].ip: 167772210 is not an IPv4 address; write it in quotes"),
    (setter("bundle", "name"), 7, "bundle.name: 7 is not a string; write it in double quotes"),
    (setter("dhcp", "lease_time"), 2**32, "dhcp.lease_time: 4294967296 is out of range"),
    (setter("dhcp", "lease_time"), 10**4000, "dhcp.lease_time: 1000000000000000000000000000000000000000...("),
    (setter("dhcp", "lease_time"), 30, "dhcp.lease_time: 30 is out of range"),
    (setter("dhcp", "router"), "0.0.0.0", "dhcp.router: '0.0.0.0' is not a unicast address"),
    (setter("dhcp", "dns"), ["224.0.0.1"], "dhcp.dns[0]: '224.0.0.1' is not a unicast address"),
    (setter("dhcp", "subnet"), "10.0.2.1/24", "dhcp.subnet: '10.0.2.1/24' is not a subnet"),
]


@pytest.mark.parametrize(("put", "value", "expected"), STRICT)
def test_types_are_strict_and_bounded(put: Callable[[Data, Any], None], value: Any, expected: str) -> None:
    data = lab_data()
    put(data, value)
    assert expected in refused(data)


CROSS = [
    # (change, expected)
    (lambda d: d["hosts"][0].update(ip="10.0.2.0"),
     "hosts[0].ip: '10.0.2.0' is the network address of dhcp.subnet '10.0.2.0/24'"),
    (lambda d: d["hosts"][0].update(ip="10.0.2.255"),
     "hosts[0].ip: '10.0.2.255' is the broadcast address of dhcp.subnet '10.0.2.0/24'"),
    (lambda d: d["hosts"][0].update(ip="10.0.2.9") or d["dhcp"].update(router="10.0.2.9"),
     "hosts[0].ip: '10.0.2.9' is the router's address (dhcp.router)"),
    (lambda d: d["server"].update(address="10.0.2.255"),
     "server.address: '10.0.2.255' is the broadcast address of dhcp.subnet '10.0.2.0/24'"),
    (lambda d: d["dhcp"].update(router="10.0.2.0"),
     "dhcp.router: '10.0.2.0' is the network address of dhcp.subnet '10.0.2.0/24'"),
    (lambda d: d["server"].update(address="10.0.2.150"), "server.address: '10.0.2.150' is the server's own "
     "address but lies in the DHCP pool"),
    (lambda d: d["entries"].append({"name": "disk", "root": "local", "image": "kdev"}),
     "entries[1].image: root = 'local' boots the local disk and loads no image; remove image = 'kdev'"),
    (lambda d: d["entries"].append({"name": "disk", "root": "local", "image": "nope"}),
     "entries[1].image: root = 'local' boots the local disk"),
    (lambda d: d["menu"].update(default="lvie"), "menu.default: 'lvie' is not an entry; did you mean 'live'?"),
    (lambda d: d["hosts"][0].update(entry="liv"), "hosts[0].entry: 'liv' is not an entry; did you mean 'live'?"),
    (lambda d: d["entries"][0].update(image="kdv"), "entries[0].image: 'kdv' is not an image; did you mean 'kdev'?"),
    (lambda d: d["server"].update(adress="10.0.2.2"), "server.adress: unknown key; did you mean 'address'?"),
    (lambda d: d["hosts"][0].update(writeable_root=True),
     "hosts[0].writeable_root: unknown key; did you mean 'writable_root'?"),
    (lambda d: d.update(entrys=[]), "entrys: unknown key; did you mean 'entries'?"),
    (lambda d: d["images"]["kdev"].update(initramfs="x"),
     "images.kdev.initramfs: unknown key; did you mean 'initrd'?"),
    (lambda d: d["images"]["kdev"].update(zzz="x"), "images.kdev.zzz: unknown key; the keys here are "
     "kernel, initrd"),
    (lambda d: d["entries"][0].update(root="nsf"), "entries[0].root: 'nsf': Input should be 'ramdisk', 'nfs', "
     "'live' or 'local'; did you mean 'nfs'?"),
]


@pytest.mark.parametrize(("change", "expected"), CROSS)
def test_what_cannot_boot_is_refused_with_the_culprit_named(
        change: Callable[[Data], Any], expected: str) -> None:
    data = lab_data()
    change(data)
    assert expected in refused(data)


def test_deeply_nested_value_is_refused_not_a_crash() -> None:
    data = lab_data()
    value: Any = []
    for _ in range(3000):
        value = [value]
    data["bundle"]["description"] = value
    assert "bundle.description:" in refused(data)
