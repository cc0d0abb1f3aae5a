"""What is published in a repository (`bootpack inspect`): bundles and appliance images."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from ..errors import BootpackError
from .artifact import A_CREATED, A_DIGEST, A_OCI_VERSION, A_VERSION, is_bundle_manifest
from .client import Manifest, RegistryClient, connect
from .reference import APPLIANCE_SUFFIX, LATEST, Reference, parse_reference
from .signature import SIGNATURE_TYPE


@dataclass(frozen=True)
class Published:
    tag: str
    kind: str  # bundle | appliance | signature | other
    digest: str  # manifest digest
    version: str | None
    bundle_digest: str | None
    created: str | None
    size: int | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _seconds(timestamp: str | None) -> str | None:
    """RFC 3339 to whole seconds in UTC ('2026-11-22T04:17:11.45729382Z' -> '...04:17:11Z')."""
    if not timestamp:
        return None
    try:
        parsed = dt.datetime.fromisoformat(re.sub(r"\.\d+", "", timestamp, count=1))
    except ValueError:
        return timestamp
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def describe(client: RegistryClient, ref: Reference, m: Manifest) -> Published:
    tag = ref.tag or ref.digest or ""
    layers = m.data.get("layers") or []
    size = sum(int(lay.get("size", 0)) for lay in layers) if layers else None
    if is_bundle_manifest(m):
        a = m.annotations
        return Published(tag=tag, kind="bundle", digest=m.digest, version=a.get(A_VERSION),
                         bundle_digest=a.get(A_DIGEST), created=a.get(A_CREATED), size=size)
    if m.data.get("artifactType") == SIGNATURE_TYPE:  # `push --sign`, tag scheme sha256-HEX.sig
        return Published(tag=tag, kind="signature", digest=m.digest, version=None,
                         bundle_digest=None, created=None, size=size)
    config = m.data.get("config") or {}
    if config.get("mediaType", "").endswith("container.image.v1+json") or \
            config.get("mediaType") == "application/vnd.oci.image.config.v1+json":
        created = labels = None
        try:
            blob = client.fetch_json_blob(ref, config["digest"])
            created = blob.get("created")
            labels = (blob.get("config") or {}).get("Labels") or {}
        except (BootpackError, KeyError, ValueError):
            labels = {}
        version = (labels or {}).get(A_VERSION) or (labels or {}).get(A_OCI_VERSION)
        if version is None and tag.endswith(APPLIANCE_SUFFIX) and tag != LATEST + APPLIANCE_SUFFIX:
            version = tag.removesuffix(APPLIANCE_SUFFIX)
        return Published(tag=tag, kind="appliance", digest=m.digest, version=version,
                         bundle_digest=(labels or {}).get(A_DIGEST), created=_seconds(created),
                         size=size)
    return Published(tag=tag, kind="other", digest=m.digest, version=None, bundle_digest=None,
                     created=None, size=size)


def inspect_repository(client: RegistryClient, repo: Reference) -> list[Published]:
    """Every tag of repo (or just repo's tag/digest), newest first."""
    if repo.tag or repo.digest:
        refs = [repo]
    else:
        refs = [repo.with_tag(t) for t in client.list_tags(repo)]
        if not refs:
            raise BootpackError(f"{repo}: nothing published in this repository (or it does not exist)")
    found = []
    for ref in refs:
        m = client.get_manifest_raw(ref)
        if m is None:
            if repo.tag or repo.digest:
                raise BootpackError(f"{ref}: no such tag or digest")
            continue  # deleted between listing and fetching
        found.append(describe(client, ref, m))
    # An appliance without a version label (latest-appliance) serves the bundle with its digest.
    versions = {p.bundle_digest: p.version for p in found if p.kind == "bundle" and p.version}
    found = [dataclasses.replace(p, version=versions.get(p.bundle_digest))
             if p.kind == "appliance" and p.version is None else p for p in found]
    found.sort(key=lambda p: p.tag)
    found.sort(key=lambda p: p.created or "", reverse=True)
    return found


def inspect(ref: str, *, insecure: bool = False) -> list[dict[str, object]]:
    """`bootpack inspect`: what is published in REF (or at REF:TAG / REF@DIGEST)."""
    parsed = parse_reference(ref)
    client = connect(parsed.registry, insecure)
    return [p.as_dict() for p in inspect_repository(client, parsed)]


def inspect_table(rows: list[dict[str, object]]) -> str:
    """inspect()'s rows as an aligned text table."""
    header = ("TAG", "KIND", "VERSION", "CREATED", "SIZE", "DIGEST", "BUNDLE DIGEST")
    table = [header] + [(
        str(r["tag"]), str(r["kind"]), str(r["version"] or "-"), str(r["created"] or "-"),
        "-" if r["size"] is None else f"{int(str(r['size'])) / 1e6:.1f} MB", str(r["digest"]),
        str(r["bundle_digest"] or "-"),
    ) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
                     for row in table)
