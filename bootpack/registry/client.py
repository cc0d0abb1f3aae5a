"""A connection to one OCI registry: oras-py's Registry with bootpack's errors, auth and timeouts.

oras-py speaks the distribution protocol (blob uploads, manifests, tags, token auth). This module
adds what bootpack needs around it:

- credentials resolved exactly as Docker does (DOCKER_CONFIG or ~/.docker/config.json, `auths`,
  `credHelpers`, `credsStore`), through the Docker SDK, so `docker login` is the only login;
- the auth scheme chosen from the registry's own challenge (Basic for htpasswd registries,
  Bearer tokens otherwise), checked once up front so a wrong password fails early and clearly;
- no silent retries with growing sleeps (oras retries a failed connection for minutes), a
  connect/read timeout instead, and every failure turned into a BootpackError naming the registry;
- every manifest and blob checked against its digest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oras.auth
import oras.defaults
import oras.provider
import requests
import requests.adapters

from ..errors import BootpackError
from ..files import CHUNK, Sha256, sha256_bytes
from .reference import Reference

CONNECT_TIMEOUT = 10.0  # seconds
READ_TIMEOUT = 120.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)

# Above this size a blob goes up in chunks (PATCH) instead of being read into memory at once.
CHUNKED_ABOVE = 64 << 20
CHUNK_SIZE = 16 << 20


class RegistryError(BootpackError):
    """The registry could not be reached, refused us, or sent something we cannot trust."""


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    digest: str
    media_type: str
    data: dict[str, Any]

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.data.get("annotations") or {})


def docker_config_path() -> Path:
    """Where Docker keeps logins: $DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    folder = os.environ.get("DOCKER_CONFIG")
    return Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"


def docker_credentials(registry: str) -> tuple[str, str] | None:
    """(username, password) for `registry` from Docker's config and credential helpers."""
    import docker.auth
    import docker.errors

    path = docker_config_path()
    if not path.exists():
        return None
    try:
        config = docker.auth.load_config(str(path))
        found = config.resolve_authconfig(registry)
    except docker.errors.DockerException as exc:
        raise RegistryError(f"{registry}: cannot read credentials from {path}: {exc}") from None
    if not found:
        return None
    user = found.get("username") or found.get("Username")
    secret = found.get("password") or found.get("Password")
    if found.get("IdentityToken") and not secret:
        raise RegistryError(f"{registry}: {path} holds an identity token, which bootpack cannot use; "
                            f"run `docker login {registry}` with a user name and password")
    if not user or secret is None:
        return None
    return str(user), str(secret)


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = (CONNECT_TIMEOUT, READ_TIMEOUT)
        return super().send(request, **kwargs)


# oras wraps do_request in a retry loop that sleeps 3, 5, 11, 29 and 83 seconds on any error;
# a failure here should be reported at once.
_ORAS_DO_REQUEST = oras.provider.Registry.do_request.__wrapped__


class RegistryClient(oras.provider.Registry):  # type: ignore[misc]
    """One registry host. Call connect() before anything else."""

    def __init__(self, registry: str, *, insecure: bool = False) -> None:
        super().__init__(hostname=registry, insecure=insecure)
        self.registry = registry
        self.insecure = insecure
        self._basic = False
        self._logged_in = False
        adapter = _TimeoutAdapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.auth.session = self.session

    # -- connection and auth ------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.prefix}://{self.registry}{path}"

    def connect(self) -> None:
        """Probe /v2/, pick the auth scheme, load Docker's credentials and check them."""
        response = self._raw("GET", self._url("/v2/"))
        if response.status_code == 200:
            return
        if response.status_code != 401:
            hint = ""
            if self.insecure and "HTTPS" in response.text:
                hint = "; it speaks HTTPS: drop --insecure"
            raise RegistryError(f"{self.registry}: does not look like an OCI registry (GET /v2/ "
                                f"answered HTTP {response.status_code}){hint}")
        challenge = response.headers.get("Www-Authenticate", "")
        credentials = docker_credentials(self.registry)
        self._logged_in = credentials is not None
        if challenge.lower().startswith("basic"):
            if credentials is None:
                raise RegistryError(f"{self.registry}: the registry wants a login and "
                                    f"{docker_config_path()} has none for it; run "
                                    f"`docker login {self.registry}`")
            self.auth = oras.auth.get_auth_backend("basic", self.session, self.insecure)
            self.auth.set_basic_auth(*credentials)
            self._basic = True
        elif credentials is not None:
            self.auth.set_basic_auth(*credentials)  # traded for bearer tokens by oras
        else:
            return  # token auth without a login: anonymous tokens, asked per request
        check = self.do_request(self._url("/v2/"), "GET")
        if check.status_code != 200:
            raise RegistryError(f"{self.registry}: GET /v2/ answered HTTP {check.status_code} after "
                                "logging in")

    def _raw(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            response: requests.Response = self.session.request(method, url, verify=self._tls_verify,
                                                               **kwargs)
            return response
        except requests.RequestException as exc:
            raise self._connection_error(exc) from None

    def _connection_error(self, exc: Exception) -> RegistryError:
        if isinstance(exc, requests.exceptions.SSLError):
            hint = ("; if it serves plain HTTP, add --insecure" if not self.insecure else "")
            return RegistryError(f"{self.registry}: TLS failed ({_short(exc)}){hint}")
        if isinstance(exc, requests.exceptions.Timeout):
            return RegistryError(f"{self.registry}: timed out ({_short(exc)})")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return RegistryError(f"{self.registry}: cannot reach the registry over "
                                 f"{self.prefix.upper()} ({_short(exc)}); check the host and port"
                                 + ("" if self.insecure else ", or add --insecure for plain HTTP"))
        return RegistryError(f"{self.registry}: request failed: {_short(exc)}")

    def do_request(self, url: str, method: str = "GET", data: Any = None,
                   headers: dict[str, str] | None = None, json: Any = None,
                   stream: bool = False) -> requests.Response:
        """oras's request (with its token dance), without its retry loop, with clear errors."""
        headers = dict(headers or {})
        if self._basic:
            headers.update(self.auth.get_auth_header())
        try:
            response: requests.Response = _ORAS_DO_REQUEST(self, url, method, data, dict(headers), json,
                                                           stream)
            if response.status_code == 401 and not self._basic and getattr(self.auth, "token", None):
                # oras answers a 401 by resending the token it has; when the registry wants a
                # wider scope (pull, then push), that token can never do: get a new one.
                self.auth.token = None
                response = _ORAS_DO_REQUEST(self, url, method, data, dict(headers), json, stream)
        except requests.RequestException as exc:
            raise self._connection_error(exc) from None
        except (ValueError, oras.auth.AuthenticationException) as exc:
            raise RegistryError(f"{self.registry}: authentication failed ({exc}); check "
                                f"`docker login {self.registry}`") from None
        if response.status_code == 401:
            if not self._logged_in:
                raise RegistryError(f"{self.registry}: the registry wants a login for {method} "
                                    f"{url.split(self.registry, 1)[-1]} and {docker_config_path()} has "
                                    f"none for it; run `docker login {self.registry}`")
            raise RegistryError(f"{self.registry}: the credentials were rejected (HTTP 401); "
                                f"run `docker login {self.registry}` again")
        if response.status_code == 403:
            raise RegistryError(f"{self.registry}: access denied (HTTP 403) for {method} "
                                f"{url.split(self.registry, 1)[-1]}")
        return response

    def _check(self, response: requests.Response, what: str) -> None:
        if response.status_code in (200, 201, 202):
            return
        detail = ""
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except ValueError:
            detail = response.text[:200]
        raise RegistryError(f"{self.registry}: {what} failed: HTTP {response.status_code}"
                            + (f" ({detail})" if detail else ""))

    # -- manifests, tags, blobs ---------------------------------------------------------------

    def get_manifest_raw(self, ref: Reference) -> Manifest | None:
        """The manifest at ref (tag or digest), verified; None when the tag does not exist."""
        container = self.get_container(ref.name)
        url = f"{self.prefix}://{container.manifest_url(ref.reference)}"
        response = self.do_request(url, "GET", headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        self._check(response, f"fetching the manifest of {ref}")
        raw = response.content
        digest = sha256_bytes(raw)
        if ref.digest and digest != ref.digest:
            raise RegistryError(f"{ref}: the registry sent a manifest whose digest is {digest}")
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise RegistryError(f"{ref}: manifest digest mismatch: header says {header}, "
                                f"content is {digest}")
        try:
            data = json.loads(raw)
        except ValueError:
            raise RegistryError(f"{ref}: the manifest is not JSON") from None
        media_type = data.get("mediaType") or response.headers.get("Content-Type", "")
        return Manifest(raw=raw, digest=digest, media_type=media_type.split(";")[0], data=data)

    def put_manifest(self, ref: Reference, raw: bytes, media_type: str = OCI_MANIFEST) -> str:
        """Store raw manifest bytes under ref's tag; returns (and checks) their digest."""
        container = self.get_container(ref.name)
        url = f"{self.prefix}://{container.manifest_url(ref.reference)}"
        response = self.do_request(url, "PUT", data=raw, headers={"Content-Type": media_type})
        self._check(response, f"storing the manifest at {ref}")
        digest = sha256_bytes(raw)
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise RegistryError(f"{ref}: the registry stored the manifest as {header}, expected {digest}")
        return digest

    def list_tags(self, ref: Reference) -> list[str]:
        container = self.get_container(ref.name)
        url = f"{self.prefix}://{container.tags_url()}"
        response = self.do_request(url, "GET")
        if response.status_code == 404:
            return []
        self._check(response, f"listing the tags of {ref.name}")
        tags: list[str] = []
        while True:
            tags.extend(response.json().get("tags") or [])
            link = response.links.get("next", {}).get("url")
            if not link:
                return tags
            response = self.do_request(self._url(link) if link.startswith("/") else link, "GET")
            self._check(response, f"listing the tags of {ref.name}")

    def has_blob(self, ref: Reference, digest: str) -> bool:
        container = self.get_container(ref.name)
        response = self.do_request(f"{self.prefix}://{container.get_blob_url(digest)}", "HEAD")
        return response.status_code == 200

    def push_blob(self, ref: Reference, path: Path, digest: str, size: int) -> None:
        """Upload a file as a blob (skipped when the registry already has it)."""
        if self.has_blob(ref, digest):
            return
        container = self.get_container(ref.name)
        layer = {"digest": digest, "size": size, "mediaType": "application/octet-stream"}
        if size > CHUNKED_ABOVE:
            response = self.chunked_upload(str(path), container, layer, chunk_size=CHUNK_SIZE)
        else:
            response = self.put_upload(str(path), container, layer)
        self._check(response, f"uploading blob {digest} ({size} bytes)")

    def push_bytes(self, ref: Reference, data: bytes) -> str:
        digest = sha256_bytes(data)
        if self.has_blob(ref, digest):
            return digest
        container = self.get_container(ref.name)
        response = self.do_request(f"{self.prefix}://{container.upload_blob_url()}", "POST")
        self._check(response, "starting a blob upload")
        location = self._get_location(response, container)
        url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
        response = self.do_request(url, "PUT", data=data,
                                   headers={"Content-Type": "application/octet-stream"})
        self._check(response, f"uploading blob {digest}")
        return digest

    def fetch_blob(self, ref: Reference, digest: str, size: int, target: Path) -> None:
        """Download a blob into target and check its size and digest; target removed on failure."""
        container = self.get_container(ref.name)
        url = f"{self.prefix}://{container.get_blob_url(digest)}"
        h = Sha256()
        try:
            response = self.do_request(url, "GET", stream=True)
            with response:
                if response.status_code == 404:
                    raise RegistryError(f"{ref}: blob {digest} is missing from the registry")
                self._check(response, f"downloading blob {digest}")
                with target.open("wb") as f:
                    for block in _iter_content(response):
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
        actual, got = h.digest, h.size
        if got != size or actual != digest:
            target.unlink(missing_ok=True)
            raise RegistryError(f"{ref}: blob digest mismatch: expected {digest} ({size} bytes), "
                                f"received {actual} ({got} bytes); the registry's copy is damaged or "
                                "was tampered with; nothing was changed")

    def fetch_json_blob(self, ref: Reference, digest: str, limit: int = 4 << 20) -> dict[str, Any]:
        """A small JSON blob (an image config), checked against its digest."""
        container = self.get_container(ref.name)
        response = self.do_request(f"{self.prefix}://{container.get_blob_url(digest)}", "GET")
        self._check(response, f"downloading blob {digest}")
        data = response.content[:limit]
        if sha256_bytes(data) != digest:
            raise RegistryError(f"{ref}: blob digest mismatch for {digest}")
        result: dict[str, Any] = json.loads(data)
        return result


def _iter_content(response: requests.Response) -> Iterator[bytes]:
    yield from response.iter_content(chunk_size=CHUNK)


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
