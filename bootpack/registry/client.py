"""A connection to one OCI registry: the distribution protocol's few calls bootpack needs.

Built on `requests` alone (https://distribution.github.io/distribution/spec/api/ and the OCI
distribution spec): manifests GET/HEAD/PUT, tag listing (paginated by `Link` headers), blob
HEAD, blob upload (monolithic, or chunked with PATCH above CHUNKED_ABOVE) streamed from the file,
and blob download streamed to a file with its size and digest checked. Authentication
(Docker's logins, Basic, bearer tokens) is bootpack.registry.auth.

What a generic library would not give us, and why this is owned here:

- no silent retries with growing sleeps: a connect/read timeout instead, and one failure is
  reported at once;
- every failure becomes a RegistryError naming the registry and what to do (exit status 2);
- every manifest and blob is checked against its digest, and nothing big is held in memory.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

import requests
import requests.adapters

from ..files import CHUNK, Sha256, sha256_bytes
from .auth import Auth, RegistryError, docker_config_path, parse_challenge, repository_scope
from .reference import Reference

__all__ = ["Manifest", "RegistryClient", "RegistryError", "connect"]

CONNECT_TIMEOUT = 10.0  # seconds
READ_TIMEOUT = 120.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
MANIFEST_LIMIT = 4 << 20  # distribution refuses bigger manifests too

# Above this size a blob goes up in chunks (PATCH); below, in one PUT. Both stream from the file.
CHUNKED_ABOVE = 64 << 20
CHUNK_SIZE = 16 << 20
TAG_PAGE_SIZE = 1000  # tags asked for per page (`?n=`); the registry may send fewer
_MAX_TAG_PAGES = 10_000


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    digest: str
    media_type: str
    data: dict[str, Any]

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.data.get("annotations") or {})


@dataclass(frozen=True)
class FileSlice:
    """length bytes of path from offset: a request body, reopened for every attempt."""

    path: Path
    offset: int
    length: int


class _SliceReader:
    """What requests streams as the body: read() for urllib3, len() for Content-Length."""

    def __init__(self, f: IO[bytes], length: int) -> None:
        self._f = f
        self._length = length
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._f.read(size)
        if not data:
            raise RegistryError(f"{self._f.name}: the file got shorter while it was being uploaded")
        self._left -= len(data)
        return data

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(CHUNK):
            yield block


Body = bytes | FileSlice | None


@contextlib.contextmanager
def _opened(body: Body) -> Iterator[bytes | _SliceReader | None]:
    if not isinstance(body, FileSlice):
        yield body
        return
    with body.path.open("rb") as f:
        f.seek(body.offset)
        yield _SliceReader(f, body.length)


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    """Every request gets the connect/read timeout; urllib3 retries nothing (max_retries=0)."""

    def send(self, request: requests.PreparedRequest, stream: bool = False,  # type: ignore[override]
             timeout: Any = None, **kwargs: Any) -> requests.Response:
        return super().send(request, stream=stream,
                            timeout=timeout if timeout is not None else (CONNECT_TIMEOUT, READ_TIMEOUT),
                            **kwargs)


class RegistryClient:
    """One registry host (HTTPS, or plain HTTP with insecure). Call connect() before anything else."""

    def __init__(self, registry: str, *, insecure: bool = False) -> None:
        self.registry = registry
        self.insecure = insecure
        self.scheme = "http" if insecure else "https"
        self.session = requests.Session()
        adapter = _TimeoutAdapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.auth = Auth(registry, self._send)

    # -- connection and auth ------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.scheme}://{self.registry}{path}"

    def _repo_url(self, ref: Reference, path: str) -> str:
        return self._url(f"/v2/{ref.repository}/{path}")

    def connect(self) -> None:
        """Probe /v2/, learn the auth scheme, load Docker's credentials and check them."""
        response = self._send("GET", self._url("/v2/"))
        if response.status_code == 200:
            return
        if response.status_code != 401:
            hint = ""
            if self.insecure and "HTTPS" in response.text:
                hint = "; it speaks HTTPS: drop --insecure"
            raise RegistryError(f"{self.registry}: does not look like an OCI registry (GET /v2/ "
                                f"answered HTTP {response.status_code}){hint}")
        self.auth.learn(parse_challenge(response.headers.get("WWW-Authenticate")))
        if self.auth.credentials is None:
            if self.auth.scheme == "basic":
                raise RegistryError(f"{self.registry}: the registry wants a login and "
                                    f"{docker_config_path()} has none for it; run "
                                    f"`docker login {self.registry}`")
            return  # token auth without a login: anonymous tokens, asked per repository
        check = self._request("GET", self._url("/v2/"))
        if check.status_code != 200:
            raise RegistryError(f"{self.registry}: GET /v2/ answered HTTP {check.status_code} after "
                                "logging in")

    def _send(self, method: str, url: str, *, body: Body = None, headers: Mapping[str, str] | None = None,
              params: Mapping[str, str] | None = None, stream: bool = False,
              what: str = "") -> requests.Response:
        """One HTTP request, no auth added, connection failures as RegistryError."""
        try:
            with _opened(body) as data:
                return self.session.request(method, url, data=data, headers=dict(headers or {}),
                                            params=params, stream=stream)
        except requests.RequestException as exc:
            raise self._connection_error(exc, what and f"the {what} at {url.split('?')[0]}") from None

    def _connection_error(self, exc: Exception, whom: str = "") -> RegistryError:
        """A failed connection as one line; whom is "" for the registry itself."""
        if isinstance(exc, requests.exceptions.SSLError):
            if whom:
                return RegistryError(f"{self.registry}: TLS to {whom} failed ({_short(exc)})")
            hint = "" if self.insecure else "; if it serves plain HTTP, add --insecure"
            return RegistryError(f"{self.registry}: TLS failed ({_short(exc)}){hint}")
        if isinstance(exc, requests.exceptions.Timeout):
            return RegistryError(f"{self.registry}: {whom or 'the registry'} timed out ({_short(exc)})")
        if isinstance(exc, requests.exceptions.ConnectionError):
            if whom:
                return RegistryError(f"{self.registry}: cannot reach {whom} ({_short(exc)})")
            return RegistryError(f"{self.registry}: cannot reach the registry over {self.scheme.upper()} "
                                 f"({_short(exc)}); check the host and port"
                                 + ("" if self.insecure else ", or add --insecure for plain HTTP"))
        return RegistryError(f"{self.registry}: request to {whom or 'the registry'} failed: {_short(exc)}")

    def _request(self, method: str, url: str, *, repository: str | None = None, push: bool = False,
                 body: Body = None, headers: Mapping[str, str] | None = None,
                 params: Mapping[str, str] | None = None, stream: bool = False) -> requests.Response:
        """A request with auth: the cached Basic header or token for the repository's scope,
        and, when the registry answers 401 with a challenge, one retry with what it asks for
        (a first token, a wider scope, a fresh token for an expired one)."""
        scope = repository_scope(repository, push) if repository else ""
        sent = dict(headers or {})
        authorization = self.auth.cached(scope)
        fresh = False
        if authorization is None and self.auth.scheme == "bearer":
            authorization, fresh = self.auth.header(scope, fresh=True), True
        for attempt in range(2):
            if authorization:
                sent["Authorization"] = authorization
            response = self._send(method, url, body=body, headers=sent, params=params, stream=stream)
            if response.status_code != 401 or attempt:
                break
            challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
            if challenge.scheme == "bearer":
                wanted = challenge.scope or scope
                if fresh and wanted == scope and self.auth.scheme == "bearer":
                    break  # a token just made for exactly this was refused
                self.auth.learn(challenge)
                authorization, fresh = self.auth.header(wanted, fresh=True), True
            elif challenge.scheme == "basic" and self.auth.scheme != "basic" and self.auth.credentials:
                self.auth.learn(challenge)
                authorization = self.auth.cached(scope)
            else:
                break
            response.close()
        path = url.split(self.registry, 1)[-1].split("?")[0]
        if response.status_code == 401:
            response.close()
            if self.auth.credentials is None:
                raise RegistryError(f"{self.registry}: the registry wants a login for {method} "
                                    f"{path} and {docker_config_path()} has none for it; run "
                                    f"`docker login {self.registry}`")
            raise RegistryError(f"{self.registry}: the credentials were rejected (HTTP 401); "
                                f"run `docker login {self.registry}` again")
        if response.status_code == 403:
            response.close()
            raise RegistryError(f"{self.registry}: access denied (HTTP 403) for {method} {path}; "
                                "check the repository's permissions for your login")
        return response

    def _check(self, response: requests.Response, what: str, ok: tuple[int, ...] = (200, 201, 202)) -> None:
        if response.status_code in ok:
            return
        detail = ""
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            detail = response.text[:200].strip()
        raise RegistryError(f"{self.registry}: {what} failed: HTTP {response.status_code}"
                            + (f" ({detail})" if detail else ""))

    def _read(self, response: requests.Response, limit: int, what: str) -> bytes:
        """A response body of at most limit bytes."""
        data = bytearray()
        try:
            for block in response.iter_content(chunk_size=CHUNK):
                data += block
                if len(data) > limit:
                    raise RegistryError(f"{self.registry}: {what} is larger than {limit} bytes")
        except requests.RequestException as exc:
            raise RegistryError(f"{self.registry}: reading {what} failed ({_short(exc)})") from None
        finally:
            response.close()
        return bytes(data)

    # -- manifests and tags -------------------------------------------------------------------

    def get_manifest_raw(self, ref: Reference) -> Manifest | None:
        """The manifest at ref (tag or digest), verified; None when it does not exist."""
        response = self._request("GET", self._repo_url(ref, f"manifests/{ref.reference}"),
                                 repository=ref.repository, stream=True,
                                 headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            response.close()
            return None
        self._check(response, f"fetching the manifest of {ref}", ok=(200,))
        raw = self._read(response, MANIFEST_LIMIT, f"the manifest of {ref}")
        digest = sha256_bytes(raw)
        if ref.digest and digest != ref.digest:
            raise RegistryError(f"{ref}: the registry sent a manifest whose digest is {digest}")
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise RegistryError(f"{ref}: manifest digest mismatch: header says {header}, "
                                f"content is {digest}")
        data = _json_object(raw, f"{ref}: the manifest")
        media_type = str(data.get("mediaType") or response.headers.get("Content-Type", ""))
        return Manifest(raw=raw, digest=digest, media_type=media_type.split(";")[0].strip(), data=data)

    def referrers(self, ref: Reference, digest: str, artifact_type: str) -> dict[str, Any] | None:
        """The OCI referrers index for digest (OCI 1.1), or None when the registry has no
        referrers API (distribution 2.8 answers 404) or answers something else."""
        response = self._request("GET", self._repo_url(ref, f"referrers/{digest}"),
                                 repository=ref.repository, stream=True,
                                 params={"artifactType": artifact_type},
                                 headers={"Accept": "application/vnd.oci.image.index.v1+json"})
        if response.status_code != 200:
            response.close()
            return None
        try:
            data = json.loads(self._read(response, MANIFEST_LIMIT, f"the referrers of {digest}"))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def head_manifest(self, ref: Reference) -> str | None:
        """The digest of the manifest at ref, without downloading it; None when absent."""
        response = self._request("HEAD", self._repo_url(ref, f"manifests/{ref.reference}"),
                                 repository=ref.repository, headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        self._check(response, f"looking up the manifest of {ref}", ok=(200,))
        header = response.headers.get("Docker-Content-Digest")
        if header:
            return str(header)
        found = self.get_manifest_raw(ref)  # registries need not send the header on HEAD
        return None if found is None else found.digest

    def put_manifest(self, ref: Reference, raw: bytes, media_type: str = OCI_MANIFEST) -> str:
        """Store raw manifest bytes under ref's tag; returns (and checks) their digest."""
        response = self._request("PUT", self._repo_url(ref, f"manifests/{ref.reference}"),
                                 repository=ref.repository, push=True, body=raw,
                                 headers={"Content-Type": media_type})
        self._check(response, f"storing the manifest at {ref}", ok=(200, 201))
        digest = sha256_bytes(raw)
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise RegistryError(f"{ref}: the registry stored the manifest as {header}, expected {digest}")
        return digest

    def list_tags(self, ref: Reference) -> list[str]:
        """Every tag of ref's repository, following `Link: <...>; rel="next"` pages."""
        url = self._repo_url(ref, "tags/list")
        params: dict[str, str] | None = {"n": str(TAG_PAGE_SIZE)}
        tags: list[str] = []
        for _ in range(_MAX_TAG_PAGES):
            response = self._request("GET", url, repository=ref.repository, params=params)
            if response.status_code == 404 and not tags:
                return []
            self._check(response, f"listing the tags of {ref.name}", ok=(200,))
            try:
                found = response.json().get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{ref.name}: the tag list is not JSON") from None
            tags.extend(str(t) for t in found)
            link = response.links.get("next", {}).get("url")
            if not link:
                return tags
            url, params = urljoin(response.url, link), None  # the link carries its own query
        raise RegistryError(f"{ref.name}: the registry's tag list never ends")

    # -- blobs --------------------------------------------------------------------------------

    def has_blob(self, ref: Reference, digest: str) -> bool:
        response = self._request("HEAD", self._repo_url(ref, f"blobs/{digest}"), repository=ref.repository)
        if response.status_code in (200, 404):
            return response.status_code == 200
        self._check(response, f"looking up blob {digest}", ok=(200,))
        return False

    def _start_upload(self, ref: Reference) -> str:
        response = self._request("POST", self._repo_url(ref, "blobs/uploads/"),
                                 repository=ref.repository, push=True)
        self._check(response, f"starting a blob upload to {ref.name}", ok=(202,))
        return self._location(response, ref)

    def _location(self, response: requests.Response, ref: Reference) -> str:
        """Where the upload continues: the Location header, relative or absolute."""
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.registry}: the blob upload to {ref.name} got no Location "
                                "header from the registry")
        return urljoin(response.url, location)

    def _finish_upload(self, ref: Reference, location: str, digest: str, body: Body) -> None:
        headers = {"Content-Type": "application/octet-stream"}
        response = self._request("PUT", location, repository=ref.repository, push=True, body=body,
                                 headers=headers, params={"digest": digest})
        self._check(response, f"uploading blob {digest} to {ref.name}", ok=(201,))
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != digest:
            raise RegistryError(f"{ref.name}: the registry stored blob {digest} as {stored}")

    def push_blob(self, ref: Reference, path: Path, digest: str, size: int) -> None:
        """Upload a file as a blob, streamed from disk (skipped when the registry has it)."""
        if self.has_blob(ref, digest):
            return
        location = self._start_upload(ref)
        if size <= CHUNKED_ABOVE:
            self._finish_upload(ref, location, digest, FileSlice(path, 0, size))
            return
        for offset in range(0, size, CHUNK_SIZE):
            length = min(CHUNK_SIZE, size - offset)
            response = self._request("PATCH", location, repository=ref.repository, push=True,
                                     body=FileSlice(path, offset, length),
                                     headers={"Content-Type": "application/octet-stream",
                                              "Content-Range": f"{offset}-{offset + length - 1}"})
            self._check(response, f"uploading bytes {offset}-{offset + length - 1} of blob {digest}",
                        ok=(202,))
            location = self._location(response, ref)
        self._finish_upload(ref, location, digest, b"")

    def push_bytes(self, ref: Reference, data: bytes) -> str:
        """Upload a small blob held in memory; returns its digest."""
        digest = sha256_bytes(data)
        if not self.has_blob(ref, digest):
            self._finish_upload(ref, self._start_upload(ref), digest, data)
        return digest

    def _get_blob(self, ref: Reference, digest: str) -> requests.Response:
        response = self._request("GET", self._repo_url(ref, f"blobs/{digest}"), repository=ref.repository,
                                 stream=True)
        if response.status_code == 404:
            response.close()
            raise RegistryError(f"{ref}: blob {digest} is missing from the registry")
        self._check(response, f"downloading blob {digest}", ok=(200,))
        return response

    def fetch_blob(self, ref: Reference, digest: str, size: int, target: Path) -> None:
        """Download a blob into target and check its size and digest; target removed on failure."""
        h = Sha256()
        try:
            with self._get_blob(ref, digest) as response, target.open("wb") as f:
                for block in response.iter_content(chunk_size=CHUNK):
                    h.update(block)
                    if h.size > size:
                        raise RegistryError(f"{ref}: blob {digest} is larger than the "
                                            f"{size} bytes the manifest declares")
                    f.write(block)
        except requests.RequestException as exc:
            target.unlink(missing_ok=True)
            raise RegistryError(f"{ref}: download of blob {digest} interrupted after {h.size} of "
                                f"{size} bytes ({_short(exc)}); nothing was changed") from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        if h.size != size or h.digest != digest:
            target.unlink(missing_ok=True)
            raise RegistryError(f"{ref}: blob digest mismatch: expected {digest} ({size} bytes), "
                                f"received {h.digest} ({h.size} bytes); the registry's copy is damaged "
                                "or was tampered with; nothing was changed")

    def fetch_json_blob(self, ref: Reference, digest: str, limit: int = 4 << 20) -> dict[str, Any]:
        """A small JSON blob (an image config), checked against its digest."""
        data = self._read(self._get_blob(ref, digest), limit, f"blob {digest}")
        if sha256_bytes(data) != digest:
            raise RegistryError(f"{ref}: blob digest mismatch for {digest}")
        return _json_object(data, f"{ref}: blob {digest}")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    """data parsed as a JSON object, or a RegistryError saying what it is not."""
    try:
        result = json.loads(data)
    except ValueError:
        raise RegistryError(f"{what} is not JSON") from None
    if not isinstance(result, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return result


def _short(exc: BaseException) -> str:
    text = str(exc)
    if "IncompleteRead" in text or "Connection broken" in text:
        return "connection broken"
    # urllib3 nests reasons: keep the innermost, most telling part.
    if "Caused by" in text or "Max retries" in text:
        inner = text.rsplit("(", 1)[-1].rstrip(")'\"")
        for marker in ("Connection refused", "Name or service not known", "timed out",
                       "Temporary failure in name resolution", "No route to host",
                       "WRONG_VERSION_NUMBER", "CERTIFICATE_VERIFY_FAILED"):
            if marker in text:
                return marker
        return inner[:200]
    return text[:200]


def connect(registry: str, insecure: bool) -> RegistryClient:
    """A client for registry, its auth checked."""
    client = RegistryClient(registry, insecure=insecure)
    client.connect()
    return client
