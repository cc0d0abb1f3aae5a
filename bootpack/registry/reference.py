"""Registry references (`HOST[:PORT]/PATH[:TAG|@DIGEST]`): parse and validate, nothing else.

The grammar is the one of the distribution project (what `docker` and `oras` accept), with two
deliberate restrictions that make mistakes loud instead of surprising:

- the registry host is required: bootpack never falls back to Docker Hub, so
  `site/boot` is an error and `registry.example.com/site/boot` or `127.0.0.1:5000/site/boot` is not;
- a reference carries either a tag or a digest, not both.

Tag layout in a repository REF (see docs/registry.md):

    REF:VERSION             the bundle as an OCI artifact (artifactType BUNDLE_ARTIFACT_TYPE)
    REF:latest              the bundle most recently pushed
    REF:VERSION-appliance   the appliance image that serves that bundle
    REF:latest-appliance    the appliance image most recently pushed
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import BootpackError

LATEST = "latest"
APPLIANCE_SUFFIX = "-appliance"

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])"
                     r"(?::[0-9]{1,5})?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_NAME = 255


class BadReference(BootpackError):
    """A reference that does not parse; the message shows the expected shape."""


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port], e.g. registry.example.com or 127.0.0.1:5000
    repository: str  # path inside the registry, e.g. site/boot
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=check_tag(tag), digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, tag=None, digest=digest)

    @property
    def reference(self) -> str:
        """What goes after /manifests/ in the registry API: the digest, else the tag."""
        return self.digest or self.tag or LATEST

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        if self.tag:
            return f"{self.name}:{self.tag}"
        return self.name


_SHAPE = "expected HOST[:PORT]/PATH[:TAG|@sha256:DIGEST], e.g. registry.example.com/site/boot:1.0"


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise BadReference(f"{tag!r} is not a valid tag: use up to 128 letters, digits, '_', '.' "
                             "or '-', not starting with '.' or '-'")
    return tag


def parse_reference(text: str, *, allow_tag: bool = True, allow_digest: bool = True) -> Reference:
    """Parse `text`; raise BadReference naming the first problem found."""
    raw = text.strip()
    if not raw:
        raise BadReference(f"empty registry reference; {_SHAPE}")
    if "://" in raw:
        raise BadReference(f"{text!r}: drop the URL scheme ({raw.split('://')[0]}://); HTTPS is the "
                             "default and --insecure selects plain HTTP")
    rest, digest = raw, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise BadReference(f"{text!r}: {digest!r} is not a digest (expected sha256: and 64 "
                                 "lower-case hex digits)")
    host, sep, path = rest.partition("/")
    if not sep or not path:
        raise BadReference(f"{text!r}: no repository path; {_SHAPE}")
    if not ("." in host or ":" in host or host == "localhost"):
        raise BadReference(f"{text!r}: name the registry host first (bootpack never defaults to "
                             f"Docker Hub; for it write docker.io/{rest}); {_SHAPE}")
    if not _DOMAIN.match(host):
        raise BadReference(f"{text!r}: {host!r} is not a registry host[:port]")
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        check_tag(tag)
    for component in path.split("/"):
        if not _PATH_COMPONENT.match(component):
            raise BadReference(f"{text!r}: repository path component {component!r} is invalid: use "
                                 "lower-case letters and digits, separated by '.', '_', '__' or '-'")
    if len(f"{host}/{path}") > _MAX_NAME:
        raise BadReference(f"{text!r}: repository name longer than {_MAX_NAME} characters")
    if tag is not None and digest is not None:
        raise BadReference(f"{text!r}: give either :TAG or @DIGEST, not both")
    if tag is not None and not allow_tag:
        raise BadReference(f"{text!r}: give the repository without a tag (the bundle version "
                             "becomes the tag)")
    if digest is not None and not allow_digest:
        raise BadReference(f"{text!r}: give the repository without a digest")
    return Reference(registry=host, repository=path, tag=tag, digest=digest)


def appliance_tag(version: str) -> str:
    return f"{version}{APPLIANCE_SUFFIX}"


def check_version_tag(version: str) -> str:
    """A bundle version usable as a tag in the layout above (not `latest`, not `*-appliance`)."""
    check_tag(version)
    if version == LATEST or version.endswith(APPLIANCE_SUFFIX):
        raise BootpackError(f"bundle version {version!r} cannot be published: `{LATEST}` and tags "
                            f"ending in `{APPLIANCE_SUFFIX}` are reserved; change [bundle] version")
    check_tag(appliance_tag(version))
    return version
