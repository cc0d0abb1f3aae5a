"""push / pull / inspect against a real registry (Debian's docker-registry on 127.0.0.1)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootpack.cli import main
from tests.support.marker import write_artifacts
from tests.support.outputs import leftovers
from tests.support.registry_server import (
    Registry,
    copy_bundle,
    cutting_proxy,
    empty_docker_config,
    free_port,
    registry_available,
    run_registry,
    token_service,
    write_htpasswd,
)

pytestmark = pytest.mark.skipif(not registry_available(),
                                reason="needs /usr/bin/docker-registry (scripts/install --test)")

SPEC = """schema = 1

[bundle]
name = "lab"
version = "{version}"

[server]
address = "10.0.2.2"

[dhcp]
mode = "server"
subnet = "10.0.2.0/24"
range = ["10.0.2.100", "10.0.2.150"]

[images.kdev]
kernel = "{artifacts}/vmlinuz"
initrd = "{artifacts}/initrd.img"

[[entries]]
name = "marker"
image = "kdev"
root = "ramdisk"
cmdline = "{cmdline}"

[[hosts]]
name = "node1"
mac = "52:54:00:12:34:56"
ip = "10.0.2.20"
"""


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts")
    write_artifacts(folder)
    return folder


def write_spec(folder: Path, artifacts: Path, version: str = "1.0", cmdline: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / f"spec-{version}-{len(cmdline)}.toml"
    spec.write_text(SPEC.format(version=version, artifacts=artifacts, cmdline=cmdline))
    return spec


def bootpack(*args: str | Path) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Path:
    folder = tmp_path_factory.mktemp("bundle")
    assert bootpack("-q", "build", write_spec(folder, artifacts), "-o", folder / "lab") == 0
    return folder / "lab"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture
def repo(registry: Registry, request: pytest.FixtureRequest) -> str:
    """A repository of its own for each test (the registry is shared)."""
    name = request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")
    return f"{registry.host}/site/{name}"


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Docker config of the test's own: never the user's logins."""
    return empty_docker_config(tmp_path, monkeypatch)


def tree(root: Path) -> dict[str, bytes | str]:
    """Every path under root with its bytes (files), target (links) or 'dir'."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[rel] = "dir"
        else:
            found[rel] = path.read_bytes() + oct(stat.S_IMODE(path.stat().st_mode)).encode()
    return found


def error_of(capsys: pytest.CaptureFixture[str], code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# -- the happy path -----------------------------------------------------------------------------


def test_push_pull_roundtrip_and_inspect(bundle: Path, repo: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    assert bootpack("push", bundle, repo, "--no-image", "--insecure") == 0
    pushed = time.monotonic() - start
    out = capsys.readouterr().out
    assert f"artifact  {repo}:1.0@sha256:" in out and "pushed" in out
    manifest_digest = out.split(f"{repo}:1.0@")[1].split()[0]

    start = time.monotonic()
    assert bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "pulled", "--insecure") == 0
    pulled = time.monotonic() - start
    assert tree(tmp_path / "pulled") == tree(bundle)
    assert (tmp_path / "pulled.tar.gz").read_bytes() == bundle.with_name("lab.tar.gz").read_bytes()
    assert leftovers(tmp_path) == []
    print(f"push {pushed:.2f} s, pull {pulled:.2f} s, archive "
          f"{bundle.with_name('lab.tar.gz').stat().st_size / 1e6:.1f} MB")

    # :latest and @digest name the same bundle
    assert bootpack("pull", repo, "-o", tmp_path / "latest", "--insecure") == 0
    assert tree(tmp_path / "latest") == tree(bundle)
    assert bootpack("pull", f"{repo}@{manifest_digest}", "-o", tmp_path / "bydigest", "--insecure") == 0
    assert tree(tmp_path / "bydigest") == tree(bundle)
    capsys.readouterr()

    assert bootpack("inspect", repo, "--insecure", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["tag"] for r in rows} == {"1.0", "latest"}
    digest = json.loads((bundle / "bundle.json").read_text())["digest"]
    for row in rows:
        assert row["kind"] == "bundle" and row["version"] == "1.0"
        assert row["digest"] == manifest_digest and row["bundle_digest"] == digest
        assert row["created"].endswith("Z")
    assert bootpack("inspect", repo, "--insecure") == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["TAG", "KIND", "VERSION", "CREATED"]
    assert "1.0     bundle  1.0" in table


def test_artifact_manifest_shape(bundle: Path, repo: str) -> None:
    from bootpack.registry import connect
    from bootpack.registry.reference import parse_reference

    assert bootpack("push", bundle, repo, "--no-image", "--insecure") == 0
    ref = parse_reference(f"{repo}:1.0")
    m = connect(ref.registry, insecure=True).get_manifest_raw(ref)
    assert m is not None
    assert m.data["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert m.data["artifactType"] == "application/vnd.bootpack.bundle.v1"
    assert m.data["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    [layer] = m.data["layers"]
    assert layer["mediaType"] == "application/vnd.bootpack.bundle.layer.v1.tar+gzip"
    assert layer["annotations"]["org.opencontainers.image.title"] == "lab-1.0.tar.gz"
    manifest = json.loads((bundle / "bundle.json").read_text())
    a = m.data["annotations"]
    assert (a["dev.bootpack.bundle.name"], a["dev.bootpack.bundle.version"],
            a["dev.bootpack.bundle.digest"]) == ("lab", "1.0", manifest["digest"])


def test_versions_are_immutable_and_latest_follows(artifacts: Path, repo: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    first = write_spec(tmp_path / "a", artifacts, "1.0")
    assert bootpack("push", first, repo, "--no-image", "--insecure") == 0  # a SPEC: built, then pushed
    capsys.readouterr()

    # the same content again: a no-op success
    assert bootpack("push", write_spec(tmp_path / "b", artifacts, "1.0"), repo, "--no-image",
                    "--insecure") == 0
    assert "unchanged (already published)" in capsys.readouterr().out

    # other content under the same version: refused, registry untouched
    changed = write_spec(tmp_path / "c", artifacts, "1.0", cmdline="quiet")
    err = error_of(capsys, bootpack("push", changed, repo, "--no-image", "--insecure"))
    assert "immutable" in err and "--force" in err
    assert bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "still", "--insecure") == 0
    assert "quiet" not in (tmp_path / "still/tftpboot/pxelinux.cfg/default").read_text()

    # --force replaces it
    assert bootpack("push", changed, repo, "--no-image", "--insecure", "--force") == 0
    assert bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "forced", "--insecure") == 0
    assert "quiet" in (tmp_path / "forced/tftpboot/pxelinux.cfg/default").read_text()

    # latest follows the newest push
    assert bootpack("push", write_spec(tmp_path / "d", artifacts, "2.0"), repo, "--no-image",
                    "--insecure") == 0
    capsys.readouterr()
    assert bootpack("inspect", repo, "--insecure", "--json") == 0
    rows = {r["tag"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"1.0", "2.0", "latest"}
    assert rows["latest"]["digest"] == rows["2.0"]["digest"] != rows["1.0"]["digest"]
    assert rows["latest"]["version"] == "2.0"


# -- bad input and faults -----------------------------------------------------------------------


@pytest.mark.parametrize(("ref", "complaint"), [
    ("site/boot", "name the registry host"),
    ("127.0.0.1:5000/Site/boot", "component 'Site'"),
    ("127.0.0.1:5000/site/boot:1.0", "without a tag"),
    ("http://127.0.0.1:5000/site/boot", "drop the URL scheme"),
])
def test_malformed_push_reference(bundle: Path, ref: str, complaint: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert complaint in error_of(capsys, bootpack("push", bundle, ref, "--no-image"))


@pytest.mark.parametrize(("ref", "complaint"), [
    ("site/boot", "name the registry host"),
    ("127.0.0.1:5000/site/boot@sha256:abc", "not a digest"),
    ("127.0.0.1:5000/site/boot:1.0@sha256:" + "0" * 64, "either :TAG or @DIGEST"),
])
def test_malformed_pull_reference(ref: str, complaint: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    err = error_of(capsys, bootpack("pull", ref, "-o", tmp_path / "out", "--insecure"))
    assert complaint in err
    assert list(tmp_path.iterdir()) == [tmp_path / "docker-config"]


def test_unreachable_registry(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    start = time.monotonic()
    err = error_of(capsys, bootpack("push", bundle, f"127.0.0.1:{port}/site/boot", "--no-image",
                                    "--insecure"))
    assert "cannot reach the registry" in err and f"127.0.0.1:{port}" in err
    err = error_of(capsys, bootpack("pull", f"127.0.0.1:{port}/site/boot:1.0", "-o", tmp_path / "out",
                                    "--insecure"))
    assert "cannot reach the registry" in err
    assert time.monotonic() - start < 10  # no retry loop with growing sleeps
    assert not (tmp_path / "out").exists()


def test_https_to_a_plain_http_registry_suggests_insecure(bundle: Path, repo: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    err = error_of(capsys, bootpack("push", bundle, repo, "--no-image"))
    assert "--insecure" in err


def test_https_by_default(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    with run_registry(tmp_path / "registry", tls=True) as server:
        repo = f"{server.host}/site/tls"
        err = error_of(capsys, bootpack("push", bundle, repo, "--no-image"))
        assert "TLS failed (CERTIFICATE_VERIFY_FAILED)" in err
        assert server.certificate is not None
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.certificate))  # a private CA
        assert bootpack("push", bundle, repo, "--no-image") == 0
        assert bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "pulled") == 0
        assert tree(tmp_path / "pulled") == tree(bundle)
        # --insecure means plain HTTP, which this registry does not speak
        err = error_of(capsys, bootpack("inspect", repo, "--insecure"))
        assert "drop --insecure" in err


def test_missing_version_and_not_a_bundle(bundle: Path, repo: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert bootpack("push", bundle, repo, "--no-image", "--insecure") == 0
    capsys.readouterr()
    err = error_of(capsys, bootpack("pull", f"{repo}:9.9", "-o", tmp_path / "out", "--insecure"))
    assert "no such tag" in err and "bootpack inspect" in err
    err = error_of(capsys, bootpack("pull", f"{repo}@sha256:" + "0" * 64, "-o", tmp_path / "out",
                                    "--insecure"))
    assert "no such digest" in err
    assert not (tmp_path / "out").exists()


def test_not_a_bundle_directory(tmp_path: Path, registry: Registry,
                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    err = error_of(capsys, bootpack("push", tmp_path / "empty", f"{registry.host}/site/x", "--no-image",
                                    "--insecure"))
    assert "not a bootpack bundle" in err


def test_bundle_directory_without_its_archive(bundle: Path, repo: str, tmp_path: Path) -> None:
    """The archive is written again, byte for byte the one `bootpack build` wrote."""
    copy = tmp_path / "copy"
    copy_bundle(bundle, copy)
    (copy.with_name("copy.tar.gz")).unlink()
    assert bootpack("-q", "push", copy, repo, "--no-image", "--insecure") == 0
    assert bootpack("-q", "pull", f"{repo}:1.0", "-o", tmp_path / "pulled", "--insecure") == 0
    assert tree(tmp_path / "pulled") == tree(bundle)
    assert (tmp_path / "pulled.tar.gz").read_bytes() == bundle.with_name("lab.tar.gz").read_bytes()


def test_reserved_version_is_refused_before_building(artifacts: Path, registry: Registry, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, artifacts, "latest")
    err = error_of(capsys, bootpack("push", spec, f"{registry.host}/site/x", "--no-image", "--insecure"))
    assert "reserved" in err and "Writing" not in err


def test_damaged_bundle_directory_is_not_pushed(bundle: Path, repo: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    copy_bundle(bundle, copy)
    (copy.with_name("copy.tar.gz")).unlink()  # force a check of the directory itself
    (copy / "tftpboot/pxelinux.cfg/default").write_text("tampered\n")
    err = error_of(capsys, bootpack("push", copy, repo, "--no-image", "--insecure"))
    assert "changed: tftpboot/pxelinux.cfg/default" in err


def test_tampered_blob(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with run_registry(tmp_path / "registry") as server:
        repo = f"{server.host}/site/tamper"
        assert bootpack("push", bundle, repo, "--no-image", "--insecure") == 0
        out = tmp_path / "deployed"
        assert bootpack("pull", f"{repo}:1.0", "-o", out, "--insecure") == 0
        before = tree(out)
        blob = _layer_blob(server, repo)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, one bit pattern changed
        blob.write_bytes(bytes(data))
        capsys.readouterr()
        err = error_of(capsys, bootpack("pull", f"{repo}:1.0", "-o", out, "--insecure"))
        assert "digest mismatch" in err and "nothing was changed" in err
        assert tree(out) == before
        assert leftovers(tmp_path) == []


def _layer_blob(server: Registry, repo: str) -> Path:
    from bootpack.registry import connect
    from bootpack.registry.reference import parse_reference

    ref = parse_reference(f"{repo}:1.0")
    m = connect(ref.registry, insecure=True).get_manifest_raw(ref)
    assert m is not None
    return server.blob_file(m.data["layers"][0]["digest"])


def test_interrupted_pull_leaves_the_target_untouched(bundle: Path, artifacts: Path, repo: str,
                                                      registry: Registry, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert bootpack("push", bundle, repo, "--no-image", "--insecure") == 0
    # An earlier, different bundle is deployed in the target.
    assert bootpack("-q", "build", write_spec(tmp_path / "old", artifacts, "0.9"), "-o",
                    tmp_path / "deployed") == 0
    before = tree(tmp_path / "deployed")
    old_archive = (tmp_path / "deployed.tar.gz").read_bytes()
    capsys.readouterr()
    with cutting_proxy(registry.host, limit=2_000_000) as proxy:  # cut 2 MB into the ~9 MB blob
        path = repo.split("/", 1)[1]
        err = error_of(capsys, bootpack("pull", f"{proxy}/{path}:1.0", "-o", tmp_path / "deployed",
                                        "--insecure"))
    assert "interrupted" in err and "connection broken" in err
    assert tree(tmp_path / "deployed") == before
    assert (tmp_path / "deployed.tar.gz").read_bytes() == old_archive
    assert leftovers(tmp_path) == []


def test_ctrl_c_during_pull_leaves_the_target_untouched(bundle: Path, artifacts: Path, repo: str,
                                                        registry: Registry, tmp_path: Path) -> None:
    """The real command, interrupted (SIGINT) while the download hangs half-way."""
    assert bootpack("-q", "push", bundle, repo, "--no-image", "--insecure") == 0
    assert bootpack("-q", "build", write_spec(tmp_path / "old", artifacts, "0.9"), "-o",
                    tmp_path / "deployed") == 0
    before = tree(tmp_path / "deployed")
    with cutting_proxy(registry.host, limit=2_000_000, stall=True) as proxy:
        path = repo.split("/", 1)[1]
        process = subprocess.Popen(
            [sys.executable, "-m", "bootpack", "pull", f"{proxy}/{path}:1.0", "-o",
             str(tmp_path / "deployed"), "--insecure"], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        store = tmp_path / ".deployed.bootpack"  # the new version's archive (see output.py)
        old = os.readlink(store / "current")

        def started() -> bool:
            return any(p.parent.name != old for p in store.glob("v-*/deployed.tar.gz"))

        while time.monotonic() < deadline and not started():
            time.sleep(0.05)
        assert started(), "the download never started"
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "interrupted; " in err and "deployed and deployed.tar.gz were left as they were" in err
    assert "Traceback" not in err
    assert tree(tmp_path / "deployed") == before
    assert leftovers(tmp_path) == []


def test_exit_status_of_the_command(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bootpack", "pull", "site/boot:1.0", "-o",
                             str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("bootpack: error: 'site/boot:1.0': name the registry host")
    assert "Traceback" not in result.stderr


def test_pull_refuses_to_replace_a_foreign_directory(bundle: Path, repo: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert bootpack("push", bundle, repo, "--no-image", "--insecure") == 0
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    err = error_of(capsys, bootpack("pull", f"{repo}:1.0", "-o", target, "--insecure"))
    assert "not a bootpack bundle" in err
    assert (target / "notes.txt").read_text() == "keep me"


# -- credentials --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    folder = tmp_path_factory.mktemp("auth-registry")
    htpasswd = write_htpasswd(folder / "htpasswd", "builder", "s3cret")
    with run_registry(folder, htpasswd=htpasswd) as server:
        yield server


def login(config: Path, host: str, user: str, password: str) -> None:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


def test_basic_auth_from_docker_config(bundle: Path, auth_registry: Registry, docker_config: Path,
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = f"{auth_registry.host}/site/auth"
    err = error_of(capsys, bootpack("push", bundle, repo, "--no-image", "--insecure"))
    assert "wants a login" in err and f"docker login {auth_registry.host}" in err

    login(docker_config, auth_registry.host, "builder", "wrong")
    err = error_of(capsys, bootpack("push", bundle, repo, "--no-image", "--insecure"))
    assert "credentials were rejected" in err

    login(docker_config, auth_registry.host, "builder", "s3cret")
    assert bootpack("push", bundle, repo, "--no-image", "--insecure") == 0
    assert bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "pulled", "--insecure") == 0
    assert tree(tmp_path / "pulled") == tree(bundle)
    assert bootpack("inspect", repo, "--insecure") == 0


def test_basic_auth_from_a_credential_helper(bundle: Path, auth_registry: Registry, docker_config: Path,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helpers = tmp_path / "bin"
    helpers.mkdir()
    helper = helpers / "docker-credential-bptest"
    helper.write_text("#!/bin/sh\nread host\n"
                      'echo "{\\"ServerURL\\":\\"$host\\",\\"Username\\":\\"builder\\",'
                      '\\"Secret\\":\\"s3cret\\"}"\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helpers}:{os.environ['PATH']}")
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {auth_registry.host: "bptest"}}))
    repo = f"{auth_registry.host}/site/helper"
    assert bootpack("push", bundle, repo, "--no-image", "--insecure") == 0
    assert bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "pulled", "--insecure") == 0
    assert tree(tmp_path / "pulled") == tree(bundle)


def test_token_auth(bundle: Path, docker_config: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    """A registry that hands out bearer tokens (Harbor, GitLab, GHCR style)."""
    with token_service(tmp_path / "token", "builder", "s3cret") as tokens, \
            run_registry(tmp_path / "registry", token=tokens) as server:
        repo = f"{server.host}/site/token"
        err = error_of(capsys, bootpack("push", bundle, repo, "--no-image", "--insecure"))
        assert "wants a login" in err and f"docker login {server.host}" in err
        login(docker_config, server.host, "builder", "wrong")
        err = error_of(capsys, bootpack("push", bundle, repo, "--no-image", "--insecure"))
        assert "authentication failed" in err and f"docker login {server.host}" in err
        login(docker_config, server.host, "builder", "s3cret")
        assert bootpack("push", bundle, repo, "--no-image", "--insecure") == 0
        assert bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "pulled", "--insecure") == 0
        assert tree(tmp_path / "pulled") == tree(bundle)
        assert bootpack("inspect", repo, "--insecure") == 0


def test_token_refresh_and_wider_scope(bundle: Path, docker_config: Path, tmp_path: Path) -> None:
    """A token the registry no longer accepts (expired) is replaced once, silently; a pull token
    is traded for a push token when the client starts writing."""
    from bootpack.registry import connect
    from bootpack.registry.reference import parse_reference

    with token_service(tmp_path / "token", "builder", "s3cret") as tokens, \
            run_registry(tmp_path / "registry", token=tokens) as server:
        login(docker_config, server.host, "builder", "s3cret")
        ref = parse_reference(f"{server.host}/site/refresh:1.0")
        client = connect(ref.registry, insecure=True)
        assert client.get_manifest_raw(ref) is None  # a pull token
        assert client.auth.cached("repository:site/refresh:pull") is not None
        assert client.auth.cached("repository:site/refresh:pull,push") is None
        digest = client.push_bytes(ref, b"{}")  # a push token, asked for on the way
        for scope in list(client.auth._tokens):
            client.auth._tokens[scope] = "expired"
        assert client.has_blob(ref, digest)
        assert client.push_bytes(ref, b"[]").startswith("sha256:")


def test_chunked_upload(bundle: Path, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big archives go up in chunks instead of one in-memory PUT."""
    import bootpack.registry.client as client

    monkeypatch.setattr(client, "CHUNKED_ABOVE", 1 << 20)
    monkeypatch.setattr(client, "CHUNK_SIZE", 3 << 20)
    assert bootpack("push", bundle, repo, "--no-image", "--insecure") == 0
    assert bootpack("pull", f"{repo}:1.0", "-o", tmp_path / "pulled", "--insecure") == 0
    assert tree(tmp_path / "pulled") == tree(bundle)


# -- the appliance image (Docker engine) --------------------------------------------------------


def _docker() -> Any:
    import docker

    return docker.from_env()


@pytest.fixture
def appliance(bundle: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A stand-in appliance image for `bundle` (until `bootpack image` lands): FROM scratch,
    busybox and the bundle, labelled with the bundle digest; its command prints bundle.json."""
    import shutil
    import uuid

    client = _docker()
    digest = json.loads((bundle / "bundle.json").read_text())["digest"]
    context = tmp_path / "context"
    context.mkdir()
    shutil.copyfile("/bin/busybox", context / "busybox")
    (context / "busybox").chmod(0o755)
    shutil.copytree(bundle, context / "bundle")
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY bundle /srv/bootpack\n"
        f"LABEL dev.bootpack.bundle.digest={digest}\n"
        'CMD ["/bin/busybox", "cat", "/srv/bootpack/bundle.json"]\n')
    tag = f"bp-reg-appliance:{uuid.uuid4().hex[:8]}"
    image, _ = client.images.build(path=str(context), tag=tag, rm=True)
    yield image.id, digest
    _remove_image(image.id)


def _remove_image(image_id: str) -> None:
    import docker.errors

    client = _docker()
    try:
        image = client.images.get(image_id)
    except docker.errors.ImageNotFound:
        return
    for tag in image.tags:
        client.images.remove(tag, noprune=False)
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(image_id, force=True)


@pytest.mark.docker
def test_push_appliance_image_and_run_it(bundle: Path, appliance: tuple[str, str], repo: str,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import uuid

    image_id, digest = appliance
    start = time.monotonic()
    assert bootpack("push", bundle, repo, "--insecure") == 0  # finds the image by its label
    print(f"push with image {time.monotonic() - start:.2f} s", file=sys.stderr)
    out = capsys.readouterr().out
    assert f"appliance {repo}:1.0-appliance@sha256:" in out and out.count("  pushed") == 2

    assert bootpack("inspect", repo, "--insecure", "--json") == 0
    rows = {r["tag"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"1.0", "latest", "1.0-appliance", "latest-appliance"}
    assert rows["1.0-appliance"]["kind"] == "appliance"
    assert rows["1.0-appliance"]["bundle_digest"] == digest
    assert rows["1.0-appliance"]["version"] == "1.0"
    assert rows["latest-appliance"]["digest"] == rows["1.0-appliance"]["digest"]
    assert rows["latest-appliance"]["version"] == "1.0"
    assert rows["1.0-appliance"]["created"].endswith("Z") and "." not in rows["1.0-appliance"]["created"]

    # bootpack pull wants the bundle, not the image
    err = error_of(capsys, bootpack("pull", f"{repo}:1.0-appliance", "-o", tmp_path / "x", "--insecure"))
    assert "not a bootpack bundle" in err and "appliance image" in err

    # The same again: nothing to do for either.
    assert bootpack("push", bundle, repo, "--insecure") == 0
    assert capsys.readouterr().out.count("unchanged (already published)") == 2

    # Run the appliance from the registry, with no local copy of the image.
    _remove_image(image_id)
    client = _docker()
    name = f"bp-reg-run-{uuid.uuid4().hex[:8]}"
    try:
        logs = client.containers.run(f"{repo}:1.0-appliance", name=name, remove=True)
    finally:
        _remove_image(client.images.get(f"{repo}:1.0-appliance").id)
    assert json.loads(logs)["digest"] == digest


@pytest.mark.docker
def test_appliance_image_conflicts(bundle: Path, appliance: tuple[str, str], repo: str,
                                   artifacts: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    image_id, digest = appliance
    assert bootpack("push", bundle, repo, "--insecure", "--image", image_id) == 0
    capsys.readouterr()
    client = _docker()
    other, _ = client.images.build(
        fileobj=io.BytesIO(b"FROM scratch\nLABEL purpose=bp-reg-test\n"), rm=True)
    try:
        # another image under the published version: refused, the artifact stays as it was
        err = error_of(capsys, bootpack("push", bundle, repo, "--insecure", "--image", other.id))
        assert "1.0-appliance already holds another image" in err and "--force" in err
        assert bootpack("push", bundle, repo, "--insecure", "--image", other.id, "--force") == 0
    finally:
        _remove_image(other.id)
    # an image labelled for another bundle is not pushed as this one's appliance
    newer = tmp_path / "newer"
    assert bootpack("-q", "build", write_spec(tmp_path / "s", artifacts, "2.0"), "-o", newer) == 0
    capsys.readouterr()
    err = error_of(capsys, bootpack("push", newer, repo, "--insecure", "--image", image_id))
    assert f"serves bundle {digest}" in err
    # no appliance image for the newer bundle yet: push bakes one, labelled for it
    newer_digest = json.loads((newer / "bundle.json").read_text())["digest"]
    try:
        assert bootpack("push", newer, repo, "--insecure") == 0
        baked = client.images.get("bootpack/lab:2.0")
        assert baked.labels["dev.bootpack.bundle.digest"] == newer_digest
    finally:
        for tag in ("bootpack/lab:2.0", f"{repo}:2.0-appliance", f"{repo}:latest-appliance"):
            with contextlib.suppress(Exception):
                client.images.remove(tag)


@pytest.mark.docker
def test_appliance_push_with_credentials(bundle: Path, appliance: tuple[str, str],
                                         auth_registry: Registry, docker_config: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    repo = f"{auth_registry.host}/site/appliance"
    login(docker_config, auth_registry.host, "builder", "wrong")
    err = error_of(capsys, bootpack("push", bundle, repo, "--insecure"))
    assert "credentials were rejected" in err
    login(docker_config, auth_registry.host, "builder", "s3cret")
    assert bootpack("push", bundle, repo, "--insecure") == 0
    assert capsys.readouterr().out.count("  pushed") == 2
