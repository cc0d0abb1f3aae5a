"""Registry references: pure parsing, no network."""

from __future__ import annotations

import pytest

from bootpack.errors import BootpackError
from bootpack.registry.reference import (
    BadReference,
    Reference,
    appliance_tag,
    check_version_tag,
    parse_reference,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "want"), [
    ("registry.example.com/site/boot", Reference("registry.example.com", "site/boot")),
    ("127.0.0.1:5000/boot:1.0", Reference("127.0.0.1:5000", "boot", tag="1.0")),
    ("localhost/a/b/c:v1_2-rc.3", Reference("localhost", "a/b/c", tag="v1_2-rc.3")),
    (f"reg.example:443/site/boot@{DIGEST}", Reference("reg.example:443", "site/boot", digest=DIGEST)),
    ("[::1]:5000/site/boot", Reference("[::1]:5000", "site/boot")),
    ("docker.io/library/debian:bookworm", Reference("docker.io", "library/debian", tag="bookworm")),
    ("r.example.com/a__b/c-d.e", Reference("r.example.com", "a__b/c-d.e")),
])
def test_valid(text: str, want: Reference) -> None:
    assert parse_reference(text) == want


@pytest.mark.parametrize(("text", "complaint"), [
    ("", "empty"),
    ("site/boot", "name the registry host"),
    ("boot", "no repository path"),
    ("https://registry.example.com/site/boot", "drop the URL scheme"),
    ("registry.example.com/", "no repository path"),
    ("registry.example.com/Site/boot", "component 'Site'"),
    ("registry.example.com/site//boot", "component ''"),
    ("registry.example.com/site/boot-", "component 'boot-'"),
    ("registry.example.com/site/boot:", "not a valid tag"),
    ("registry.example.com/site/boot:-x", "not a valid tag"),
    ("registry.example.com/site/boot:" + "x" * 129, "not a valid tag"),
    ("registry.example.com/site/boot@sha256:abc", "not a digest"),
    ("registry.example.com/site/boot@md5:" + "ab" * 16, "not a digest"),
    (f"registry.example.com/site/boot:1.0@{DIGEST}", "either :TAG or @DIGEST"),
    ("bad_host.example.com/site/boot", "not a registry host"),
    ("registry.example.com:port/site/boot", "not a registry host"),
    ("registry.example.com/" + "a/" * 130 + "b", "longer than 255"),
])
def test_invalid(text: str, complaint: str) -> None:
    with pytest.raises(BadReference, match=complaint.replace("(", r"\(")):
        parse_reference(text)


def test_push_refs_take_no_tag_or_digest() -> None:
    with pytest.raises(BadReference, match="without a tag"):
        parse_reference("r.example.com/site/boot:1.0", allow_tag=False)
    with pytest.raises(BadReference, match="without a digest"):
        parse_reference(f"r.example.com/site/boot@{DIGEST}", allow_digest=False)


def test_str_and_helpers() -> None:
    ref = parse_reference("127.0.0.1:5000/site/boot")
    assert str(ref) == "127.0.0.1:5000/site/boot"
    assert ref.reference == "latest"
    assert str(ref.with_tag("1.0")) == "127.0.0.1:5000/site/boot:1.0"
    assert ref.with_tag("1.0").reference == "1.0"
    assert str(ref.with_digest(DIGEST)) == f"127.0.0.1:5000/site/boot@{DIGEST}"
    assert ref.with_digest(DIGEST).reference == DIGEST
    assert ref.name == "127.0.0.1:5000/site/boot"
    assert appliance_tag("1.0") == "1.0-appliance"


@pytest.mark.parametrize("version", ["latest", "1.0-appliance"])
def test_reserved_versions(version: str) -> None:
    with pytest.raises(BootpackError, match="reserved"):
        check_version_tag(version)


def test_ordinary_version() -> None:
    assert check_version_tag("2024.06.1") == "2024.06.1"
