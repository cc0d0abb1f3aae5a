"""Signed versions against the real registry (Debian's docker-registry 2.8 on 127.0.0.1).

Registry 2.8 has no OCI referrers API (GET /v2/REPO/referrers/DIGEST answers 404), so these
tests exercise the documented fallback: the signature stored at tag `sha256-<hex>.sig`
(test_this_registry_has_no_referrers_api pins that down). Real Ed25519 keys, real uploads.
"""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootpack.cli import main
from bootpack.registry import connect
from bootpack.registry.reference import parse_reference
from bootpack.registry.signature import (
    A_SIGNATURE,
    SIGNATURE_TYPE,
    fallback_tag,
    referrers,
)
from tests.registry.test_push_pull import write_spec
from tests.support.marker import write_artifacts
from tests.support.registry_server import (
    Registry,
    empty_docker_config,
    registry_available,
    run_registry,
)

pytestmark = pytest.mark.skipif(not registry_available(),
                                reason="needs /usr/bin/docker-registry (scripts/install --test)")


def bootpack(*args: str | Path) -> int:
    return main([str(a) for a in args])


def refused(capsys: pytest.CaptureFixture[str], code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("bootpack: error: ")
    return err


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("signing")


@pytest.fixture(scope="module")
def bundles(work: Path) -> dict[str, Path]:
    artifacts = work / "artifacts"
    artifacts.mkdir()
    write_artifacts(artifacts)
    built = {}
    for version in ("1.0", "2.0"):
        folder = work / f"b{version}"
        assert bootpack("-q", "build", write_spec(folder, artifacts, version), "-o", folder / "lab") == 0
        built[version] = folder / "lab"
    return built


@pytest.fixture(scope="module")
def registry(work: Path) -> Iterator[Registry]:
    with run_registry(work / "registry") as server:
        yield server


@pytest.fixture(scope="module")
def keys(work: Path) -> dict[str, Path]:
    for name in ("site", "other"):
        assert bootpack("key", "generate", work / f"{name}.key") == 0
    return {"site": work / "site.key", "site.pub": work / "site.key.pub",
            "other": work / "other.key", "other.pub": work / "other.key.pub"}


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_docker_config(tmp_path, monkeypatch)


@pytest.fixture
def repo(registry: Registry, request: pytest.FixtureRequest) -> str:
    return f"{registry.host}/sig/{request.node.name.lower().replace('_', '-')}"


def manifest_digest(repo: str, tag: str) -> str:
    ref = parse_reference(f"{repo}:{tag}")
    m = connect(ref.registry, insecure=True).get_manifest_raw(ref)
    assert m is not None
    return m.digest


def test_key_generate_writes_standard_pem_and_never_overwrites(
        keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    private, public = keys["site"], keys["site.pub"]
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    pub = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(pub, Ed25519PublicKey)
    pub.verify(key.sign(b"x"), b"x")
    before = private.read_bytes()
    err = refused(capsys, bootpack("key", "generate", private))
    assert "already exists" in err and private.read_bytes() == before


def test_this_registry_has_no_referrers_api(registry: Registry) -> None:
    """Why the tests exercise the tag scheme: distribution 2.8 answers the referrers API 404."""
    ref = parse_reference(f"{registry.host}/sig/probe:x")
    assert referrers(connect(ref.registry, True), ref, "sha256:" + "0" * 64) is None


def test_signed_version_verifies_and_the_key_stays_here(
        bundles: dict[str, Path], keys: dict[str, Path], repo: str, registry: Registry,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bootpack("push", bundles["1.0"], repo, "--no-image", "--insecure", "--sign", keys["site"]) == 0
    out = capsys.readouterr().out
    digest = manifest_digest(repo, "1.0")
    assert f"tag {fallback_tag(digest)}" in out

    # The signature artifact: subject = the bundle manifest, tag scheme on this registry.
    ref = parse_reference(f"{repo}:{fallback_tag(digest)}")
    sig = connect(ref.registry, insecure=True).get_manifest_raw(ref)
    assert sig is not None
    assert sig.data["artifactType"] == SIGNATURE_TYPE
    assert sig.data["subject"]["digest"] == digest

    assert bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "out", "--insecure",
                    "--verify", keys["site.pub"]) == 0
    assert "signature ok" in capsys.readouterr().out
    capsys.readouterr()
    assert bootpack("inspect", repo, "--insecure", "--json") == 0
    kinds = {row["tag"]: row["kind"] for row in json.loads(capsys.readouterr().out)}
    assert kinds == {"1.0": "bundle", "latest": "bundle", fallback_tag(digest): "signature"}
    assert (tmp_path / "out" / "bundle.json").is_file()
    # by digest too
    assert bootpack("pull", f"{repo}@{digest}", "-o", tmp_path / "d", "--insecure",
                    "--verify", keys["site.pub"]) == 0

    # Signing again writes the same bytes (deterministic) and still verifies.
    assert bootpack("push", bundles["1.0"], repo, "--no-image", "--insecure", "--sign", keys["site"]) == 0
    again = connect(ref.registry, insecure=True).get_manifest_raw(ref)
    assert again is not None and again.raw == sig.raw

    # No part of the private key reached the registry.
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(keys["site"].read_bytes(), password=None)
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    pem_body = "".join(keys["site"].read_text().splitlines()[1:-1]).encode()
    for path in registry.storage.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert seed not in data and pem_body not in data and base64.b64encode(seed) not in data


def test_unsigned_version_is_refused(bundles: dict[str, Path], keys: dict[str, Path], repo: str,
                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bootpack("push", bundles["1.0"], repo, "--no-image", "--insecure") == 0
    capsys.readouterr()
    err = refused(capsys, bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "out", "--insecure",
                                   "--verify", keys["site.pub"]))
    assert "refusing an unsigned version" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tar.gz").exists()
    # Without --verify the same version pulls: the refusal came from the signature check.
    assert bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "out", "--insecure") == 0


def test_wrong_key_is_refused(bundles: dict[str, Path], keys: dict[str, Path], repo: str,
                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bootpack("push", bundles["1.0"], repo, "--no-image", "--insecure", "--sign", keys["other"]) == 0
    capsys.readouterr()
    err = refused(capsys, bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "out", "--insecure",
                                   "--verify", keys["site.pub"]))
    assert "wrongly signed" in err and "not by the given key" in err
    assert not (tmp_path / "out").exists()
    assert bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "out", "--insecure",
                    "--verify", keys["other.pub"]) == 0


def test_tampered_archive_blob_is_refused(bundles: dict[str, Path], keys: dict[str, Path], repo: str,
                                          registry: Registry, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert bootpack("push", bundles["1.0"], repo, "--no-image", "--insecure", "--sign", keys["site"]) == 0
    capsys.readouterr()
    ref = parse_reference(f"{repo}:1.0")
    m = connect(ref.registry, insecure=True).get_manifest_raw(ref)
    assert m is not None
    blob = registry.blob_file(m.data["layers"][0]["digest"])
    original = blob.read_bytes()
    try:
        blob.write_bytes(original[:-10] + bytes(b ^ 0xFF for b in original[-10:]))
        err = refused(capsys, bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "out", "--insecure",
                                       "--verify", keys["site.pub"]))
        assert "digest mismatch" in err and "tampered" in err
        assert not (tmp_path / "out").exists()
    finally:
        blob.write_bytes(original)


def test_tampered_signature_is_refused(bundles: dict[str, Path], keys: dict[str, Path], repo: str,
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bootpack("push", bundles["1.0"], repo, "--no-image", "--insecure", "--sign", keys["site"]) == 0
    capsys.readouterr()
    digest = manifest_digest(repo, "1.0")
    ref = parse_reference(f"{repo}:{fallback_tag(digest)}")
    client = connect(ref.registry, insecure=True)
    sig = client.get_manifest_raw(ref)
    assert sig is not None
    data = json.loads(sig.raw)
    raw_sig = bytearray(base64.b64decode(data["annotations"][A_SIGNATURE]))
    raw_sig[0] ^= 1
    data["annotations"][A_SIGNATURE] = base64.b64encode(bytes(raw_sig)).decode()
    client.put_manifest(ref, json.dumps(data).encode())
    err = refused(capsys, bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "out", "--insecure",
                                   "--verify", keys["site.pub"]))
    assert "does not verify" in err and "tampered" in err


def test_signature_of_another_version_is_refused(bundles: dict[str, Path], keys: dict[str, Path],
                                                 repo: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A valid signature copied next to another (unsigned) version does not vouch for it."""
    assert bootpack("push", bundles["1.0"], repo, "--no-image", "--insecure", "--sign", keys["site"]) == 0
    assert bootpack("push", bundles["2.0"], repo, "--no-image", "--insecure") == 0
    capsys.readouterr()
    one, two = manifest_digest(repo, "1.0"), manifest_digest(repo, "2.0")
    client = connect(parse_reference(repo).registry, insecure=True)
    sig = client.get_manifest_raw(parse_reference(f"{repo}:{fallback_tag(one)}"))
    assert sig is not None
    client.put_manifest(parse_reference(f"{repo}:{fallback_tag(two)}"), sig.raw)
    err = refused(capsys, bootpack("pull", f"{repo}:2.0", "-o", tmp_path / "out", "--insecure",
                                   "--verify", keys["site.pub"]))
    assert "about another manifest" in err


def test_bad_key_files(bundles: dict[str, Path], keys: dict[str, Path], repo: str, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, bootpack("push", bundles["1.0"], repo, "--no-image", "--insecure",
                                   "--sign", keys["site.pub"]))
    assert "that is a public key" in err
    err = refused(capsys, bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "o", "--insecure",
                                   "--verify", keys["site"]))
    assert "that is a private key" in err
    err = refused(capsys, bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "o", "--insecure",
                                   "--verify", tmp_path / "missing.pub"))
    assert "no such public key file" in err
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    err = refused(capsys, bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "o", "--insecure",
                                   "--verify", junk))
    assert "not a PEM public key" in err
    # An RSA key is a standard PEM key, but not Ed25519.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_file = tmp_path / "rsa.key"
    rsa_file.write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    err = refused(capsys, bootpack("push", bundles["1.0"], repo, "--no-image", "--insecure",
                                   "--sign", rsa_file))
    assert "Ed25519" in err
    # Nothing was pushed by the refused pushes.
    ref = parse_reference(f"{repo}:1.0")
    assert connect(ref.registry, insecure=True).get_manifest_raw(ref) is None
