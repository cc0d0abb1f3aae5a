"""Property tests: for generated specs, every rendered file passes its real validator and no field's
value ever starts a new directive.

Free-text fields are drawn from valid values and from hostile text (quotes, separators, comment
and brace characters, non-ASCII, newlines). A spec the model refuses is fine; a spec it accepts
must render files that (1) `dhcpd -t`, `dnsmasq --test` and `kea-dhcp4 -t` accept, (2) parse
back (exports, ganesha.conf, pxelinux) to exactly the values the spec gave, and (3) have the same
directive structure as the same spec with every free-text value replaced by a plain word.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bootpack.appliance.runtime import Paths, render_dnsmasq_runtime
from bootpack.errors import BootpackError
from bootpack.render import render_bundle_configs
from bootpack.render.nfs import nfs_export_list
from bootpack.spec import parse_spec
from bootpack.spec.model import LEASE_TIME_MAX, Spec
from bootpack.spec.site import Site
from tests.support.ipxe import ipxe_commands
from tests.support.specs import lab_data

HOSTILE = st.text(alphabet=st.sampled_from(list('ab -_.,;:#"\'\\{}()=*/$\n\r\t\u00e4\u2603')),
                  min_size=0, max_size=12)
VALID = {
    # quotes, '#', ';', braces included; and words iPXE's parser would read as syntax
    "label": st.one_of(st.from_regex(r"[ -~]{1,30}", fullmatch=True), st.lists(
        st.sampled_from(["a", ";", "||", "&&", "#1", "-x", "b\\", "$5", "'q'"]), min_size=1,
        max_size=5).map(" ".join)),
    "word": st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True),
    "domain": st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9](\.[a-z][a-z0-9]{0,5}){0,2}", fullmatch=True),
    "cmdline": st.from_regex(r"[ -~]{0,40}", fullmatch=True),
    "path": st.from_regex(r"(/[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,6}){1,3}", fullmatch=True),
}
FIELDS = ("domain", "title", "description", "root", "label0", "cmdline0", "label1", "cmdline1",
          "nfs_path", "label2", "host0", "hostcmd0", "host1", "hostcmd1")


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    # Every field valid (valid values still hold quotes, '#', ';' and braces), except at most
    # one that gets hostile text: most examples are accepted and rendered.
    hostile = draw(st.one_of(st.none(), st.sampled_from(FIELDS)))

    def value(field: str, kind: str) -> Any:
        return draw(HOSTILE if field == hostile else VALID[kind])

    data = lab_data()
    data["dhcp"]["mode"] = draw(st.sampled_from(["server", "proxy"]))
    data["loaders"] = {"bios_ipxe": draw(st.booleans())}
    data["dhcp"]["domain"] = value("domain", "domain")
    data["dhcp"]["lease_time"] = draw(st.integers(120, LEASE_TIME_MAX))
    data["menu"]["title"] = value("title", "label")
    data["bundle"]["description"] = value("description", "label")
    data["server"]["root"] = value("root", "path")
    data["entries"][0]["label"] = value("label0", "label")
    data["entries"][0]["cmdline"] = value("cmdline0", "cmdline")
    data["entries"].append({"name": "net", "image": "kdev", "root": "nfs",
                            "label": value("label1", "label"), "cmdline": value("cmdline1", "cmdline"),
                            "nfs_path": value("nfs_path", "path"),
                            "nfs_version": draw(st.sampled_from([3, 4]))})
    data["entries"].append({"name": "disk", "root": "local", "label": value("label2", "label")})
    data["hosts"][0]["name"] = value("host0", "word")
    data["hosts"][0]["cmdline"] = value("hostcmd0", "cmdline")
    data["hosts"].append({"name": value("host1", "word"), "mac": "52:54:00:00:00:02",
                          "ip": "10.0.2.51", "entry": "net", "writable_root": draw(st.booleans()),
                          "cmdline": value("hostcmd1", "cmdline")})
    return data


def plain(data: dict[str, Any]) -> dict[str, Any]:
    """The same spec with every free-text value replaced by a plain word."""
    data = json.loads(json.dumps(data))
    data["dhcp"]["domain"] = "plain.lan"
    data["menu"]["title"] = data["bundle"]["description"] = "plain"
    data["server"]["root"] = "/srv/plain"
    for entry in data["entries"]:
        entry["label"] = "plain"
        entry["cmdline"] = "plain" if entry.get("cmdline", "").strip() else ""
        if "nfs_path" in entry:
            entry["nfs_path"] = "/srv/plain/nfs"
    for i, host in enumerate(data["hosts"]):
        host["name"] = f"plain{i}"
        host["cmdline"] = "plain" if host["cmdline"].strip() else ""
    return data


def shape(text: str) -> list[str]:
    """Each line's directive: its first word (before '=' or a space), blank and comment lines
    kept as such."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            out.append("#" if stripped else "")
        else:
            word = re.split(r"[\s=]", stripped, maxsplit=1)[0]
            out.append(word if re.fullmatch(r"[A-Za-z_-]+|[{}]", word) else "<value>")
    return out


def validate(folder: Path, files: dict[str, str]) -> None:
    """One run of each real validator over this example's files."""
    for name, command in (("dhcpd.conf", ["dhcpd", "-t", "-cf"]),
                          ("dnsmasq.conf", ["dnsmasq", "--test", "-C"]),
                          ("kea-dhcp4.json", ["kea-dhcp4", "-t"])):
        if f"etc/{name}" not in files:
            continue
        path = folder / name
        path.write_text(files[f"etc/{name}"], encoding="utf-8")
        result = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{name}:\n{files[f'etc/{name}']}\n{result.stdout}{result.stderr}"


def parse_exports(text: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        assert len(fields) == 2, line
        match = re.fullmatch(r"([0-9./]+)\(([a-z_,]+)\)", fields[1])
        assert match, line
        rows.append((fields[0], match[1], match[2]))
    return rows


def parse_ganesha(text: str) -> list[dict[str, str]]:
    """EXPORT blocks as {key: value}: a tokenizer for ganesha.conf's grammar (quoted strings,
    words, '{', '}', '=', ';', ',')."""
    tokens = re.findall(r'"[^"\\\n]*"|[{}=;,]|[^\s{}=;,"]+|\S', re.sub(r"#[^\n]*", "", text))
    blocks: list[dict[str, str]] = []
    depth, key, current = 0, None, None
    for i, token in enumerate(tokens):
        if token == "{":
            depth += 1
            if depth == 1:
                assert tokens[i - 1] == "EXPORT", tokens[i - 1]
                current = {}
                blocks.append(current)
        elif token == "}":
            depth -= 1
            assert depth >= 0
        elif token == "=":
            key = tokens[i - 1]
        elif token == ";":
            key = None
        elif key is not None and depth == 1 and current is not None and tokens[i - 1] == "=":
            current[key] = token.strip('"')
    assert depth == 0
    return blocks


def check_pxelinux(spec: Spec, files: dict[str, str]) -> None:
    default = files["tftpboot/pxelinux.cfg/default"]
    labels = [line.removeprefix("  MENU LABEL ") for line in default.splitlines()
              if line.startswith("  MENU LABEL ")]
    assert labels == [e.menu_label for e in spec.entries]
    if spec.menu.timeout:
        assert f"\nMENU TITLE {spec.menu.title}\n" in default


def check_ipxe(spec: Spec, files: dict[str, str]) -> None:
    """The menu as iPXE reads it (tests.support.ipxe): the title and each label as the spec's
    words, in one command per line."""
    default = files.get("tftpboot/ipxe/default.ipxe")
    assert (default is not None) == spec.ipxe_scripts
    if default is None or not spec.menu.timeout:
        return
    commands = [ipxe_commands(line) for line in default.splitlines()]
    assert [["menu", "--", *spec.menu.title.split()]] in commands
    items = [c[0][2:] for c in commands if c and c[0][0] == "item"]
    assert items == [e.menu_label.split() for e in spec.entries]


def ipxe_shape(text: str) -> list[list[str]]:
    """Each line's commands, by name, as iPXE reads them."""
    return [[command[0] for command in ipxe_commands(line)] for line in text.splitlines()]


needs_validators = pytest.mark.skipif(
    any(shutil.which(p) is None for p in ("dhcpd", "dnsmasq", "kea-dhcp4")),
    reason="dhcpd, dnsmasq and kea-dhcp4 are needed: run scripts/install --test")


@needs_validators
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=specs())
def test_generated_specs_render_files_their_validators_accept(tmp_path: Path, data: dict[str, Any]) -> None:
    try:
        spec = parse_spec(data)
    except BootpackError:
        event("refused")
        return  # refused: nothing is rendered
    event(f"accepted, dhcp {spec.dhcp.mode}")
    if '"' in spec.menu.title:
        event("accepted a title with a quote")
    site = Site.from_spec(spec)
    files = render_bundle_configs(spec, site)
    if spec.dhcp.mode == "proxy":
        files["etc/dnsmasq.conf"] = render_dnsmasq_runtime(
            spec, site, Paths(bundle="/srv/b", runtime=str(tmp_path)), "lo")

    # 1. the real validators
    validate(tmp_path, files)

    # 2. parsed back to exactly the values the spec gave
    expected = nfs_export_list(spec, site)
    assert [p for p, _, _ in parse_exports(files["etc/exports"])] == [e.path for e in expected]
    blocks = parse_ganesha(files["etc/ganesha.conf"])
    assert [(b["Path"], b["Pseudo"]) for b in blocks] == [(e.path, e.path) for e in expected]
    check_pxelinux(spec, files)
    check_ipxe(spec, files)

    # 3. no value starts a new directive: same structure as the spec with plain words
    plain_spec = parse_spec(plain(data))
    plain_site = Site.from_spec(plain_spec)
    plain_files = render_bundle_configs(plain_spec, plain_site)
    if spec.dhcp.mode == "proxy":
        plain_files["etc/dnsmasq.conf"] = render_dnsmasq_runtime(
            plain_spec, plain_site, Paths(bundle="/srv/b", runtime=str(tmp_path)), "lo")
    renamed = {re.sub(r"01-52-54-00-.*", "host", k): v for k, v in files.items()}
    plain_renamed = {re.sub(r"01-52-54-00-.*", "host", k): v for k, v in plain_files.items()}
    assert sorted(renamed) == sorted(plain_renamed)
    for path, text in renamed.items():
        if path.endswith(".json"):
            json.loads(text)  # Kea: JSON escapes everything
            continue
        if path.endswith(".ipxe"):
            assert ipxe_shape(text) == ipxe_shape(plain_renamed[path]), path
        assert shape(text) == shape(plain_renamed[path]), path
