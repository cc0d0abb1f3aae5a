"""Pull a bundle: download, verify and install it atomically (`bootpack pull`)."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..bundle import layout
from ..bundle.archive import extract_archive
from ..bundle.manifest import Bundle, BundleResult
from ..bundle.output import archive_path, staged_output
from ..bundle.verify import check_digest, verify
from ..errors import BootpackError
from ..progress import NORMAL, Progress
from .artifact import A_DIGEST, LAYER_TYPE, Blob, archive_layer, is_bundle_manifest
from .client import DOCKER_MANIFEST, Manifest, RegistryClient, RegistryError, connect
from .reference import APPLIANCE_SUFFIX, LATEST, Reference, parse_reference


@dataclass(frozen=True)
class PullResult(BundleResult):
    ref: Reference
    manifest_digest: str
    bundle: Bundle  # as installed in the output directory

    @property
    def bundle_digest(self) -> str:
        return self.bundle.digest


def resolve_bundle(client: RegistryClient, ref: Reference) -> tuple[Manifest, Blob]:
    """The bundle manifest at ref and its archive layer, or a clear error."""
    m = client.get_manifest_raw(ref)
    if m is None:
        what = "digest" if ref.digest else "tag"
        raise BootpackError(f"{ref}: no such {what} in the registry; `bootpack inspect {ref.name}` "
                            "lists the published versions")
    if not is_bundle_manifest(m):
        hint = (" (that is the appliance image: run it with docker)"
                if (ref.tag or "").endswith(APPLIANCE_SUFFIX) or m.media_type == DOCKER_MANIFEST else "")
        raise BootpackError(f"{ref}: not a bootpack bundle (media type {m.media_type}, artifact type "
                            f"{m.data.get('artifactType')}){hint}")
    layer = archive_layer(m)
    if layer is None:
        raise BootpackError(f"{ref}: a bundle manifest must have exactly one {LAYER_TYPE} layer with "
                            "a sha256 digest and a size")
    return m, layer


def pull_bundle(client: RegistryClient, ref: Reference, output: Path,
                progress: Progress | None = None,
                check: Callable[[Manifest], None] | None = None) -> PullResult:
    """Download, verify and atomically install the bundle at ref into output (+ output.tar.gz).

    Order of checks: manifest digest (when pulled by digest), archive blob size and digest,
    then bundle.json against every extracted file, then the bundle digest against the
    manifest's annotation. `check` (e.g. the signature check of --verify) sees the manifest
    before anything is downloaded. Any failure leaves output and output.tar.gz as they were.
    """
    progress = progress or Progress(NORMAL)
    m, layer = resolve_bundle(client, ref)
    if check is not None:
        check(m)
    want = m.annotations.get(A_DIGEST)
    with staged_output(output, progress) as staging:
        archive = archive_path(staging)
        with progress.step(f"Downloading {ref} ({layer.size / 1e6:.1f} MB)"):
            client.fetch_blob(ref, layer.digest, layer.size, archive)
        with progress.step("Unpacking and verifying every file"):
            try:
                extract_archive(archive, staging)
            except (OSError, tarfile.TarError, EOFError, ValueError) as exc:
                raise BootpackError(f"{ref}: cannot unpack the bundle archive: {exc}") from None
            pulled = Bundle.open(staging)
            problems = verify(pulled)
            if problems:
                raise BootpackError(f"{ref}: the bundle does not match its {layout.MANIFEST}: "
                                    + ", ".join(problems[:5]))
            check_digest(pulled.manifest, f"{ref}")
        if want and pulled.digest != want:
            raise RegistryError(f"{ref}: the archive holds bundle {pulled.digest} but the manifest "
                                f"announces {want}")
    out = output.absolute()
    return PullResult(ref=ref, manifest_digest=m.digest,
                      bundle=Bundle(out, pulled.manifest, archive_path(out)))


def fetch(ref: str, output: Path, *, insecure: bool = False, progress: Progress | None = None,
          public_key: Path | None = None) -> PullResult:
    """`bootpack pull`: REF[:VERSION|@DIGEST] (default :latest) -> verified bundle in output.

    With public_key (--verify), a version without a valid signature by that key is refused
    before anything is downloaded (bootpack.registry.signature)."""
    parsed = parse_reference(ref)
    if parsed.tag is None and parsed.digest is None:
        parsed = parsed.with_tag(LATEST)
    check: Callable[[Manifest], None] | None = None
    if public_key is not None:
        from .signature import load_public_key, verify_bundle_signature

        key = load_public_key(public_key)  # before connecting: a bad key file fails at once

        def verify_signature(m: Manifest) -> None:
            verify_bundle_signature(client, parsed, m, key)

        check = verify_signature
    client = connect(parsed.registry, insecure)
    return pull_bundle(client, parsed, output, progress, check=check)
