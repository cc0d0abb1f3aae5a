"""registry/auth.py and the parts of registry/client.py that need no registry."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import bootpack.registry.client as client_module
from bootpack.cli import main
from bootpack.files import sha256_bytes, sha256_file
from bootpack.registry.auth import Auth, RegistryError, parse_challenge, repository_scope
from bootpack.registry.client import FileSlice, RegistryClient, _opened, connect
from bootpack.registry.reference import parse_reference


def test_bearer_challenge() -> None:
    c = parse_challenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",'
                        'scope="repository:site/boot:pull,push"')
    assert (c.scheme, c.realm, c.service, c.scope) == (
        "bearer", "https://auth.example.com/token", "registry.example.com", "repository:site/boot:pull,push")


def test_challenge_variants() -> None:
    assert parse_challenge('Basic realm="bootpack-test"').scheme == "basic"
    assert parse_challenge(None).scheme == ""
    c = parse_challenge('bearer realm=https://a/token, service="s", error="insufficient_scope"')
    assert (c.scheme, c.realm, c.service, c.params["error"]) == ("bearer", "https://a/token", "s",
                                                                  "insufficient_scope")
    assert c.scope is None
    assert parse_challenge(r'Bearer realm="https://a/t",service="a \"q\" b"').service == 'a "q" b'


def test_scopes() -> None:
    assert repository_scope("site/boot", push=False) == "repository:site/boot:pull"
    assert repository_scope("site/boot", push=True) == "repository:site/boot:pull,push"


def test_unknown_or_bad_challenges_are_clear_errors() -> None:
    def never(*args: object, **kwargs: object) -> requests.Response:
        raise AssertionError("no request expected")

    auth = Auth("registry.example.com", never)
    with pytest.raises(RegistryError, match=r"negotiate.*Basic and Bearer"):
        auth.learn(parse_challenge("Negotiate"))
    with pytest.raises(RegistryError, match="not an HTTP"):
        auth.learn(parse_challenge('Bearer realm="/token"'))


def _response(url: str, location: str) -> requests.Response:
    response = requests.Response()
    response.url = url
    response.status_code = 202
    response.headers["Location"] = location
    return response


@pytest.mark.parametrize(("location", "expected"), [
    ("/v2/site/boot/blobs/uploads/abc?_state=x", "https://r.example.com/v2/site/boot/blobs/uploads/abc?_state=x"),
    ("https://storage.example.com/up/abc", "https://storage.example.com/up/abc"),
    ("abc?_state=y", "https://r.example.com/v2/site/boot/blobs/uploads/abc?_state=y"),
])
def test_upload_location_relative_or_absolute(location: str, expected: str) -> None:
    client = RegistryClient("r.example.com")
    ref = parse_reference("r.example.com/site/boot")
    response = _response("https://r.example.com/v2/site/boot/blobs/uploads/", location)
    assert client._location(response, ref) == expected


def test_missing_location_is_an_error() -> None:
    client = RegistryClient("r.example.com")
    response = _response("https://r.example.com/v2/site/boot/blobs/uploads/", "")
    del response.headers["Location"]
    with pytest.raises(RegistryError, match="no Location header"):
        client._location(response, parse_reference("r.example.com/site/boot"))


def test_file_slices_stream_their_bytes_only(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 10)
    with _opened(FileSlice(path, 100, 1000)) as reader:
        assert reader is not None and not isinstance(reader, bytes)
        assert len(reader) == 1000
        assert reader.read(10) == path.read_bytes()[100:110]
        assert b"".join(reader) == path.read_bytes()[110:1100]
        assert reader.read() == b""
    with _opened(FileSlice(path, 2500, 200)) as reader, \
            pytest.raises(RegistryError, match="got shorter"):
        assert reader is not None and not isinstance(reader, bytes)
        b"".join(reader)


# -- a scripted registry: what Debian's distribution 2.8 does not do (tag pages, relative Locations)


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Tags in pages of two linked by `Link` (relative, then absolute); uploads whose Location
    is always relative; blobs kept in memory."""

    tags = ["a", "b", "c", "d", "e"]
    blobs: dict[str, bytes] = {}
    uploads: dict[str, bytearray] = {}
    seen: list[str] = []
    challenge: str | None = None  # answer every request without Authorization with a 401 and this

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path}")
        if self.challenge and not self.headers.get("Authorization"):
            return self._reply(401, headers={"WWW-Authenticate": self.challenge})
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/v2/":
            return self._reply(200, b"{}")
        if url.path == "/v2/site/boot/tags/list":
            size = int(query["n"][0])
            start = self.tags.index(query["last"][0]) + 1 if "last" in query else 0
            page = self.tags[start:start + size]
            headers = {"Content-Type": "application/json"}
            if start + size < len(self.tags):
                link = f"/v2/site/boot/tags/list?n={size}&last={page[-1]}"
                if start:  # the second page links absolutely
                    link = f"http://{self.headers['Host']}{link}"
                headers["Link"] = f'<{link}>; rel="next"'
            return self._reply(200, json.dumps({"name": "site/boot", "tags": page}).encode(), headers)
        return self._reply(404)

    def do_HEAD(self) -> None:
        digest = self.path.rsplit("/", 1)[-1]
        self._reply(200 if digest in self.blobs else 404)

    def do_POST(self) -> None:
        name = f"u{len(self.uploads)}"
        self.uploads[name] = bytearray()
        self._reply(202, headers={"Location": f"/v2/site/boot/blobs/uploads/{name}?_state=0"})

    def do_PATCH(self) -> None:
        name = urllib.parse.urlparse(self.path).path.rsplit("/", 1)[-1]
        start, end = map(int, self.headers["Content-Range"].split("-"))
        data = self._body()
        if start != len(self.uploads[name]) or end != start + len(data) - 1:
            return self._reply(416)
        self.uploads[name] += data
        self.seen.append(f"PATCH {len(data)}")
        self._reply(202, headers={"Location": f"{name}?_state={len(self.uploads[name])}"})

    def do_PUT(self) -> None:
        url = urllib.parse.urlparse(self.path)
        name = url.path.rsplit("/", 1)[-1]
        digest = urllib.parse.parse_qs(url.query)["digest"][0]
        data = bytes(self.uploads.pop(name) + self._body())
        if sha256_bytes(data) != digest:
            return self._reply(400, json.dumps({"errors": [{"code": "DIGEST_INVALID",
                                                            "message": "digest mismatch"}]}).encode())
        self.blobs[digest] = data
        self._reply(201, headers={"Docker-Content-Digest": digest})

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[str]:
    _Scripted.blobs, _Scripted.uploads, _Scripted.seen, _Scripted.challenge = {}, {}, [], None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_tags_follow_link_pages(scripted: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "TAG_PAGE_SIZE", 2)
    ref = parse_reference(f"{scripted}/site/boot")
    assert connect(scripted, insecure=True).list_tags(ref) == ["a", "b", "c", "d", "e"]
    assert [s for s in _Scripted.seen if "tags" in s] == [
        "GET /v2/site/boot/tags/list?n=2", "GET /v2/site/boot/tags/list?n=2&last=b",
        "GET /v2/site/boot/tags/list?n=2&last=d"]


@pytest.mark.parametrize("chunked", [False, True])
def test_uploads_follow_relative_locations(scripted: str, tmp_path: Path, chunked: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if chunked:
        monkeypatch.setattr(client_module, "CHUNKED_ABOVE", 1000)
        monkeypatch.setattr(client_module, "CHUNK_SIZE", 4000)
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(10_000))
    digest, size = sha256_file(path)
    ref = parse_reference(f"{scripted}/site/boot:1.0")
    client = connect(scripted, insecure=True)
    client.push_blob(ref, path, digest, size)
    assert _Scripted.blobs[digest] == path.read_bytes()
    patches = [s for s in _Scripted.seen if s.startswith("PATCH")]
    assert patches == (["PATCH 4000", "PATCH 4000", "PATCH 2000"] if chunked else [])
    client.push_blob(ref, path, digest, size)  # already there: nothing sent
    assert len(_Scripted.blobs) == 1 and not _Scripted.uploads
    with pytest.raises(RegistryError, match=r"uploading blob sha256:0+ to .* HTTP 400 \(DIGEST_INVALID"):
        client.push_blob(ref, path, "sha256:" + "0" * 64, size)


def test_an_unreachable_token_service_is_named(scripted: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens there once closed
    _Scripted.challenge = f'Bearer realm="http://127.0.0.1:{dead}/token",service="scripted"'
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert main(["inspect", f"{scripted}/site/boot", "--insecure"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the token service at http://127.0.0.1:{dead}/token" in err
    assert "Connection refused" in err and "Traceback" not in err
