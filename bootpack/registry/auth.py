"""Registry authentication: Docker's stored logins, Basic auth and bearer tokens.

- Credentials are resolved exactly as Docker does (DOCKER_CONFIG or ~/.docker/config.json,
  `auths`, `credHelpers`, `credsStore`), through the Docker SDK, so `docker login` is the only
  login.
- The scheme follows the registry's own challenge (`WWW-Authenticate`): `Basic` (htpasswd
  registries) sends the login with every request; `Bearer realm=...,service=...,scope=...`
  (distribution's token auth: Harbor, GitLab, GHCR, Docker Hub) trades the login, or nothing for
  an anonymous token, for a token per scope at the realm, as the distribution token spec says.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from ..errors import BootpackError


class RegistryError(BootpackError):
    """The registry could not be reached, refused us, or sent something we cannot trust."""


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


def basic_header(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()


@dataclass(frozen=True)
class Challenge:
    """A parsed `WWW-Authenticate` header."""

    scheme: str  # "basic" or "bearer" (lower case), "" when absent
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")


_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str | None) -> Challenge:
    """`Bearer realm="https://auth/token",service="reg",scope="repository:a/b:pull"` and alike."""
    text = (header or "").strip()
    scheme, _, rest = text.partition(" ")
    params = {m.group(1).lower(): m.group(2).replace('\\"', '"') if m.group(2) is not None
              else m.group(3) for m in _PARAM.finditer(rest)}
    return Challenge(scheme=scheme.lower(), params=params)


def repository_scope(repository: str, push: bool) -> str:
    return f"repository:{repository}:{'pull,push' if push else 'pull'}"


class Auth:
    """The login for one registry and the tokens it was traded for.

    `send` is how token requests go out (the client's session, its timeouts and its errors)."""

    def __init__(self, registry: str, send: Callable[..., requests.Response]) -> None:
        self.registry = registry
        self._send = send
        self._credentials: tuple[str, str] | None = None
        self._looked_up = False
        self.scheme = ""  # "", "basic" or "bearer": what the registry asked for
        self.realm = ""
        self.service: str | None = None
        self._tokens: dict[str, str] = {}  # scope ("" for the registry itself) -> token

    @property
    def credentials(self) -> tuple[str, str] | None:
        """Docker's login for the registry, looked up (helpers run) the first time it is needed."""
        if not self._looked_up:
            self._credentials = docker_credentials(self.registry)
            self._looked_up = True
        return self._credentials

    def learn(self, challenge: Challenge) -> None:
        """Remember the scheme (and for bearer, the realm and service) the registry asks for."""
        if challenge.scheme == "basic":
            self.scheme = "basic"
        elif challenge.scheme == "bearer":
            if not challenge.realm.startswith(("https://", "http://")):
                raise RegistryError(f"{self.registry}: the registry's token realm "
                                    f"{challenge.realm!r} is not an HTTP(S) URL")
            if (challenge.realm, challenge.service) != (self.realm, self.service):
                self._tokens.clear()
            self.scheme, self.realm, self.service = "bearer", challenge.realm, challenge.service
        else:
            raise RegistryError(f"{self.registry}: the registry asks for authentication bootpack "
                                f"does not speak ({challenge.scheme or 'no WWW-Authenticate header'}); "
                                "it supports Basic and Bearer token auth")

    def cached(self, scope: str) -> str | None:
        """The Authorization header for scope if no request is needed to make it."""
        if self.scheme == "basic":
            return basic_header(self.credentials) if self.credentials else None
        if self.scheme == "bearer":
            token = self._tokens.get(scope)
            if token is None and scope.endswith(":pull"):  # a push token also pulls
                token = self._tokens.get(scope + ",push")
            return f"Bearer {token}" if token else None
        return None

    def header(self, scope: str, fresh: bool = False) -> str | None:
        """The Authorization header for scope; fresh=True trades the login for a new token."""
        if not fresh:
            cached = self.cached(scope)
            if cached is not None or self.scheme != "bearer":
                return cached
        if self.scheme != "bearer":
            return self.cached(scope)
        token = self._fetch_token(scope)
        self._tokens[scope] = token
        return f"Bearer {token}"

    def _fetch_token(self, scope: str) -> str:
        params = {}
        if self.service:
            params["service"] = self.service
        if scope:
            params["scope"] = scope
        headers = {}
        if self.credentials:
            params["account"] = self.credentials[0]
            headers["Authorization"] = basic_header(self.credentials)
        response = self._send("GET", self.realm, params=params, headers=headers, what="token service")
        if response.status_code in (401, 403):
            if self.credentials:
                raise RegistryError(f"{self.registry}: authentication failed (the token service "
                                    f"{self.realm} refused user {self.credentials[0]!r}: HTTP "
                                    f"{response.status_code}); check `docker login {self.registry}`")
            raise RegistryError(f"{self.registry}: the token service {self.realm} refused an "
                                f"anonymous token (HTTP {response.status_code}); run "
                                f"`docker login {self.registry}`")
        if response.status_code != 200:
            raise RegistryError(f"{self.registry}: the token service {self.realm} answered HTTP "
                                f"{response.status_code}")
        try:
            data = response.json()
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.registry}: the token service {self.realm} sent no token")
        return token
