"""Each named cross-field check, triggered on its own, with its fix-it message."""

from __future__ import annotations

from typing import Any

import pytest

from bootpack.errors import BootpackError
from bootpack.spec import parse_spec
from bootpack.spec.checks import CHECKS
from bootpack.spec.site import Site
from tests.support.specs import lab_data


def message(data: dict[str, Any]) -> str:
    with pytest.raises(BootpackError) as info:
        parse_spec(data)
    return str(info.value)


def add_host(data: dict[str, Any], **host: Any) -> None:
    data["hosts"].append({"name": "node2", "mac": "52:54:00:00:00:02", "ip": "10.0.2.51", **host})


def test_the_issue_example_passes_every_check() -> None:
    spec = parse_spec(lab_data())
    assert [m for check in CHECKS for m in check(spec, Site.from_spec(spec))] == []


def test_duplicate_host_name() -> None:
    data = lab_data()
    add_host(data, name="node1")
    assert "hosts[1].name: 'node1' is already used by hosts[0]" in message(data)


def test_duplicate_mac_is_case_insensitive() -> None:
    data = lab_data()
    add_host(data, mac="52:54:00:AA:BB:CC")
    assert "hosts[1].mac: '52:54:00:aa:bb:cc' is already used by hosts[0]" in message(data)


def test_duplicate_ip() -> None:
    data = lab_data()
    add_host(data, ip="10.0.2.50")
    assert "hosts[1].ip: '10.0.2.50' is already used by hosts[0]" in message(data)


def test_duplicate_entry_name() -> None:
    data = lab_data()
    data["entries"].append(dict(data["entries"][0]))
    assert "entries[1].name: 'live' is already used by entries[0]" in message(data)


def test_host_ip_outside_subnet() -> None:
    data = lab_data()
    data["hosts"][0]["ip"] = "192.168.1.5"
    assert "hosts[0].ip: '192.168.1.5' is outside dhcp.subnet '10.0.2.0/24'" in message(data)


def test_host_ip_inside_dynamic_range() -> None:
    data = lab_data()
    data["hosts"][0]["ip"] = "10.0.2.150"
    assert "hosts[0].ip: '10.0.2.150' is inside dhcp.range" in message(data)


def test_range_outside_subnet() -> None:
    data = lab_data()
    data["dhcp"]["range"] = ["10.0.2.100", "10.0.3.10"]
    assert "dhcp.range: '10.0.3.10' is outside dhcp.subnet '10.0.2.0/24'" in message(data)


def test_range_reversed() -> None:
    data = lab_data()
    data["dhcp"]["range"] = ["10.0.2.200", "10.0.2.100"]
    assert "dhcp.range: ['10.0.2.200', '10.0.2.100'] is reversed" in message(data)


def test_server_outside_subnet_in_server_mode() -> None:
    data = lab_data()
    data["server"]["address"] = "10.9.9.9"
    assert "server.address: '10.9.9.9' is outside dhcp.subnet" in message(data)


def test_server_outside_subnet_is_fine_in_proxy_mode() -> None:
    data = lab_data()
    data["server"]["address"] = "10.9.9.9"
    data["dhcp"]["mode"] = "proxy"
    assert parse_spec(data).dhcp.mode == "proxy"


def test_server_mode_needs_subnet_and_range() -> None:
    data = lab_data()
    del data["dhcp"]["subnet"], data["dhcp"]["range"]
    data["hosts"][0].pop("ip")
    text = message(data)
    assert "dhcp.subnet: dhcp.mode = 'server' needs the client subnet" in text
    assert "dhcp.range: dhcp.mode = 'server' needs a dynamic pool" in text


def test_default_entry_must_exist() -> None:
    data = lab_data()
    data["menu"]["default"] = "nope"
    assert "menu.default: 'nope' is not an entry; use one of ['live']" in message(data)


def test_host_entry_must_exist() -> None:
    data = lab_data()
    data["hosts"][0]["entry"] = "nope"
    assert "hosts[0].entry: 'nope' is not an entry" in message(data)


def test_entry_image_must_exist() -> None:
    data = lab_data()
    data["entries"][0]["image"] = "nope"
    assert "entries[0].image: 'nope' is not an image; use one of ['kdev']" in message(data)


def test_ramdisk_needs_an_initrd() -> None:
    data = lab_data()
    del data["images"]["kdev"]["initrd"]
    assert "entries[0].root: 'ramdisk' uses the initrd as the root file system" in message(data)


def test_nfs_without_initrd_is_fine_and_local_needs_no_image() -> None:
    data = lab_data()
    del data["images"]["kdev"]["initrd"]
    data["entries"][0]["root"] = "nfs"
    data["entries"].append({"name": "disk", "root": "local"})
    spec = parse_spec(data)
    assert [e.root for e in spec.entries] == ["nfs", "local"]


def test_all_problems_are_reported_at_once() -> None:
    data = lab_data()
    data["menu"]["default"] = "nope"
    data["hosts"][0]["ip"] = "10.0.2.150"
    assert "2 problems" in message(data)


def test_server_address_inside_the_pool_is_refused_by_validate() -> None:
    # The same rule `serve` applies (one set of checks): the pool must not hold the server.
    data = lab_data()
    data["server"]["address"] = data["dhcp"]["range"][0]
    assert "server.address: " in message(data)
    assert "lies in the DHCP pool" in message(data)
