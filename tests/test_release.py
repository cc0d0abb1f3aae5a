"""bootpack.release: the publish workflow's order against a real registry (Debian's
docker-registry on 127.0.0.1); the Docker engine's part is replaced by a recorder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bootpack.registry.image as registry_image
from bootpack import release
from bootpack.errors import BootpackError
from bootpack.progress import QUIET, Progress
from bootpack.registry.client import RegistryClient, RegistryError, connect
from bootpack.registry.reference import Reference, parse_reference
from tests.support.registry_server import Registry, registry_available, run_registry
from tests.support.specs import lab_data, write_spec

pytestmark = pytest.mark.skipif(not registry_available(),
                                reason="needs /usr/bin/docker-registry (scripts/install --test)")

QUIET_PROGRESS = Progress(QUIET)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty Docker config of the test's own: never the user's logins."""
    (tmp_path / "docker-config").mkdir()
    (tmp_path / "docker-config/config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every tag written, in order: ("image", tag) by the Docker engine, ("bundle", tag) by
    bootpack. The engine is a stand-in: it records its pushes and uploads nothing."""
    found: list[tuple[str, str]] = []
    put_manifest = RegistryClient.put_manifest

    def record_manifest(self: RegistryClient, ref: Reference, raw: bytes, *args: Any) -> str:
        found.append(("bundle", str(ref.tag)))
        return put_manifest(self, ref, raw, *args)

    def record_image(client: Any, image_id: str, ref: Reference, progress: Any = None) -> str:
        found.append(("image", str(ref.tag)))
        return "sha256:" + "e" * 64

    monkeypatch.setattr(RegistryClient, "put_manifest", record_manifest)
    monkeypatch.setattr(registry_image, "docker_client", lambda: object())
    monkeypatch.setattr(registry_image, "check_image_tag", lambda *args: True)
    monkeypatch.setattr(registry_image, "push_image", record_image)
    monkeypatch.setattr(release, "ensure_appliance_image", lambda *args, **kwargs: "sha256:image")
    return found


def spec(folder: Path, version: str) -> Path:
    data = lab_data()
    data["bundle"]["version"] = version
    return write_spec(folder, data)


def tag_digest(repo: str, tag: str) -> str | None:
    ref = parse_reference(f"{repo}:{tag}")
    m = connect(ref.registry, insecure=True).get_manifest_raw(ref)
    return None if m is None else m.digest


def test_latest_tags_move_after_both_version_tags(registry: Registry, events: list[tuple[str, str]],
                                                   tmp_path: Path) -> None:
    repo = f"{registry.host}/site/order"
    result = release.publish(spec(tmp_path, "1.0"), repo, insecure=True, progress=QUIET_PROGRESS)
    assert events == [("image", "1.0-appliance"), ("bundle", "1.0"),
                      ("image", "latest-appliance"), ("bundle", "latest")]
    assert result.artifact.pushed and result.image is not None and result.image.pushed
    assert tag_digest(repo, "latest") == tag_digest(repo, "1.0") == result.artifact.digest


def test_a_failed_bundle_upload_moves_no_latest_tag(registry: Registry, events: list[tuple[str, str]],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    repo = f"{registry.host}/site/broken"
    release.publish(spec(tmp_path / "a", "1.0"), repo, insecure=True, progress=QUIET_PROGRESS)
    before = tag_digest(repo, "latest")
    events.clear()

    def refuse(*args: Any) -> None:
        raise RegistryError("the registry hung up")

    monkeypatch.setattr(RegistryClient, "push_blob", refuse)
    with pytest.raises(BootpackError, match="hung up"):
        release.publish(spec(tmp_path / "b", "2.0"), repo, insecure=True, progress=QUIET_PROGRESS)
    assert events == [("image", "2.0-appliance")]  # latest-appliance still serves 1.0
    assert tag_digest(repo, "2.0") is None and tag_digest(repo, "latest") == before


def test_a_no_op_push_leaves_latest_where_it_is(registry: Registry, tmp_path: Path) -> None:
    repo = f"{registry.host}/site/noop"
    for name, version in (("a", "1.0"), ("b", "2.0")):
        release.publish(spec(tmp_path / name, version), repo, with_image=False, insecure=True,
                        progress=QUIET_PROGRESS)
    newest = tag_digest(repo, "latest")
    assert newest == tag_digest(repo, "2.0")
    again = release.publish(spec(tmp_path / "c", "1.0"), repo, with_image=False, insecure=True,
                            progress=QUIET_PROGRESS)
    assert not again.artifact.pushed and again.image is None
    assert tag_digest(repo, "latest") == newest


def test_open_source_errors(tmp_path: Path) -> None:
    with pytest.raises(BootpackError, match="no such spec file or bundle directory"):
        release.open_source(tmp_path / "missing", tmp_path, QUIET_PROGRESS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BootpackError, match="not a bootpack bundle"):
        release.open_source(tmp_path / "empty", tmp_path, QUIET_PROGRESS)
