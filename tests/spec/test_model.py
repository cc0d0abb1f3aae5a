from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bootpack.errors import BootpackError
from bootpack.spec import load_spec, parse_spec, spec_digest
from tests.support.specs import LAB, lab_data, write_spec


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(BootpackError) as info:
        parse_spec(data, source="spec.toml")
    return str(info.value)


def test_issue_example_is_accepted_unchanged(tmp_path: Path) -> None:
    loaded = load_spec(write_spec(tmp_path, LAB))
    spec = loaded.spec
    assert spec.bundle.name == "lab"
    assert spec.dhcp.range is not None and str(spec.dhcp.range[1]) == "10.0.2.200"
    assert spec.default_entry.name == "live"
    assert spec.host_entry(spec.hosts[0]).name == "live"


def test_defaults_fill_optional_sections() -> None:
    data = lab_data()
    del data["menu"]
    data["dhcp"] = {"mode": "none"}
    spec = parse_spec(data)
    assert spec.menu.timeout == 5 and spec.menu.title == "bootpack"
    assert spec.default_entry.name == "live"
    assert spec.server.http_port == 80


def test_mac_is_normalised_to_lower_case_colons() -> None:
    data = lab_data()
    data["hosts"][0]["mac"] = "52-54-00-AA-BB-CC"
    assert parse_spec(data).hosts[0].mac == "52:54:00:aa:bb:cc"


def test_bad_mac_names_the_toml_path_and_the_value() -> None:
    data = lab_data()
    data["hosts"].append({"name": "node2", "mac": "zz:11:22:33:44:55", "ip": "10.0.2.51"})
    message = problems(data)
    assert "hosts[1].mac: 'zz:11:22:33:44:55' is not a MAC address" in message


def test_bad_ip_and_unknown_key_are_reported_together() -> None:
    data = lab_data()
    data["hosts"][0]["ip"] = "10.0.2.300"
    data["server"]["adress"] = "10.0.2.2"
    message = problems(data)
    assert "hosts[0].ip: '10.0.2.300'" in message
    assert "server.adress: unknown key" in message
    assert "2 problems" in message


def test_wrong_schema_version() -> None:
    data = lab_data()
    data["schema"] = 2
    assert "schema: 2 is not supported; this bootpack reads schema = 1" in problems(data)


def test_missing_required_key() -> None:
    data = lab_data()
    del data["server"]["address"]
    assert "server.address: required key is missing" in problems(data)


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x" * 64, "a\n", "a b"])
def test_names_unsafe_as_file_names_are_refused(name: str) -> None:
    data = lab_data()
    data["entries"][0]["name"] = name
    assert "entries[0].name:" in problems(data)
    assert "is not a safe name" in problems(data)
    data = lab_data()
    data["hosts"][0]["name"] = name
    assert "hosts[0].name:" in problems(data)
    assert "is not a usable host name" in problems(data)


def test_digest_ignores_formatting_and_comments(tmp_path: Path) -> None:
    a = load_spec(write_spec(tmp_path / "a", LAB))
    b = load_spec(write_spec(tmp_path / "b", "# a comment\n" + LAB.replace("  ", " ")))
    assert a.digest == b.digest
    data = lab_data()
    data["menu"]["timeout"] = 6
    assert spec_digest(parse_spec(data)) != a.digest


def test_toml_syntax_error_gives_file_line_column(tmp_path: Path) -> None:
    path = write_spec(tmp_path, LAB.replace('name = "lab"', 'name = "lab'))
    with pytest.raises(BootpackError) as info:
        load_spec(path)
    assert f"{path}:3:" in str(info.value)
    assert "TOML syntax error" in str(info.value)


def test_missing_kernel_file_is_named(tmp_path: Path) -> None:
    path = write_spec(tmp_path, LAB, artifacts=False)
    with pytest.raises(BootpackError) as info:
        load_spec(path)
    assert "images.kdev.kernel: file 'artifacts/vmlinuz' not found" in str(info.value)
    assert "images.kdev.initrd: file 'artifacts/initrd.img' not found" in str(info.value)


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(BootpackError, match="spec file not found"):
        load_spec(tmp_path / "nope.toml")
