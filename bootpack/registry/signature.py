"""Signed versions: an Ed25519 signature attached to a bundle artifact, and its verification.

Keys are standard PEM files made with the `cryptography` library: the private key as
unencrypted PKCS#8 (mode 0600, it never leaves the signing machine: only signatures are
uploaded), the public key as SubjectPublicKeyInfo. A key is named by its id, `sha256:` of the
public key's DER bytes.

What is signed (the payload, canonical JSON, stored as the signature's one layer):

    {"type": "dev.bootpack.signature.v1", "manifest": "sha256:<bundle manifest digest>",
     "bundle": "sha256:<bundle digest>", "name": NAME, "version": VERSION}

The manifest digest pins the archive layer's digest and every annotation; the bundle digest
(bundle.json's, over every file) is what `pull` checks after unpacking. The signature artifact
(OCI 1.1 artifact guidance):

    artifactType  application/vnd.bootpack.signature.v1
    config        the empty descriptor
    layers[0]     the payload, application/vnd.bootpack.signature.v1+json
    subject       the bundle manifest's descriptor
    annotations   dev.bootpack.signature (base64 Ed25519 signature over the payload bytes),
                  dev.bootpack.signature.key (the signing key's id)

It is found through the registry's referrers API (`GET /v2/REPO/referrers/DIGEST`), and where a
registry has none (distribution 2.8, e.g. Debian's docker-registry, answers 404) through the
tag `sha256-<hex of the bundle manifest digest>.sig`, which bootpack writes whenever the
referrers API is missing. Ed25519 signatures are deterministic and the artifact has no time
stamp, so signing the same version with the same key twice writes the same bytes.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import BootpackError
from ..files import sha256_bytes
from .artifact import A_DIGEST, A_NAME, A_VERSION, EMPTY_DATA, EMPTY_TYPE
from .client import OCI_INDEX, OCI_MANIFEST, Manifest, RegistryClient
from .reference import Reference

SIGNATURE_TYPE = "application/vnd.bootpack.signature.v1"
PAYLOAD_TYPE = "application/vnd.bootpack.signature.v1+json"
PAYLOAD_KIND = "dev.bootpack.signature.v1"
A_SIGNATURE = "dev.bootpack.signature"
A_KEY = "dev.bootpack.signature.key"
MAX_PAYLOAD = 64 << 10


class SignatureError(BootpackError):
    """An unsigned, wrongly signed or tampered version (or an unusable key)."""


# -- keys --------------------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return sha256_bytes(der)


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_key(private_path: Path, public_path: Path | None = None) -> tuple[Path, Path, str]:
    """A new Ed25519 key pair: PRIVATE (PKCS#8 PEM, 0600) and PUBLIC (default PRIVATE.pub).

    Refuses to overwrite either file. Returns (private, public, key id)."""
    public_path = public_path or private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise SignatureError(f"{path}: already exists; bootpack never overwrites a key "
                                 "(remove it first, or choose another name)")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    public_path.write_bytes(public_pem(key.public_key()))
    return private_path, public_path, key_id(key.public_key())


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SignatureError(f"{path}: no such {what} file (make a key pair with "
                             "`bootpack key generate KEYFILE`)") from None
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    data = _read(path, "private key")
    if b"PUBLIC KEY" in data:
        raise SignatureError(f"{path}: that is a public key; --sign needs the private key "
                             "(the file without .pub)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SignatureError(f"{path}: the private key is encrypted; bootpack reads unencrypted "
                             "PKCS#8 PEM keys (keep the file 0600 on the signing machine)") from None
    except ValueError as exc:
        raise SignatureError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: a {type(key).__name__.lstrip('_')} key; bootpack signs with "
                             "Ed25519 keys (`bootpack key generate`)")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    data = _read(path, "public key")
    if b"PRIVATE KEY" in data:
        raise SignatureError(f"{path}: that is a private key; give the public key (KEYFILE.pub): "
                             "the private key stays on the signing machine")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SignatureError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path}: not an Ed25519 public key; bootpack verifies Ed25519 "
                             "signatures (`bootpack key generate`)")
    return key


# -- the artifact ------------------------------------------------------------------------------


def fallback_tag(manifest_digest: str) -> str:
    """The tag holding a signature where the registry has no referrers API."""
    algorithm, _, hexdigest = manifest_digest.partition(":")
    return f"{algorithm}-{hexdigest}.sig"


def payload_bytes(bundle_manifest: Manifest) -> bytes:
    a = bundle_manifest.annotations
    payload = {"type": PAYLOAD_KIND, "manifest": bundle_manifest.digest, "bundle": a.get(A_DIGEST),
               "name": a.get(A_NAME), "version": a.get(A_VERSION)}
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def signature_manifest_bytes(bundle_manifest: Manifest, payload: bytes, signature: bytes,
                             kid: str) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256_bytes(EMPTY_DATA),
                   "size": len(EMPTY_DATA), "data": "e30="},
        "layers": [{"mediaType": PAYLOAD_TYPE, "digest": sha256_bytes(payload), "size": len(payload)}],
        "subject": {"mediaType": bundle_manifest.media_type or OCI_MANIFEST,
                    "digest": bundle_manifest.digest, "size": len(bundle_manifest.raw)},
        "annotations": {A_SIGNATURE: base64.b64encode(signature).decode(), A_KEY: kid},
    }
    return json.dumps(manifest, indent=2).encode() + b"\n"


def referrers(client: RegistryClient, ref: Reference, digest: str) -> list[dict[str, Any]] | None:
    """Descriptors of the signatures referring to digest, from the referrers API; None when the
    registry has no referrers API (then the tag scheme applies)."""
    index = client.referrers(ref, digest, SIGNATURE_TYPE)
    if index is None:
        return None  # 404 (distribution 2.8) or 405: no referrers API
    if index.get("mediaType") != OCI_INDEX or not isinstance(index.get("manifests"), list):
        return None
    return [d for d in index["manifests"] if isinstance(d, dict)
            and d.get("artifactType") == SIGNATURE_TYPE and isinstance(d.get("digest"), str)]


@dataclass(frozen=True)
class Signed:
    ref: Reference  # where the signature manifest is (by digest)
    digest: str  # the signature manifest's digest
    key: str  # key id
    where: str  # "referrers" or the fallback tag


def sign_bundle(client: RegistryClient, ref: Reference, bundle_manifest: Manifest,
                key: Ed25519PrivateKey) -> Signed:
    """Sign the bundle manifest at ref and attach the signature (referrers, else the tag)."""
    payload = payload_bytes(bundle_manifest)
    signature = key.sign(payload)
    kid = key_id(key.public_key())
    client.push_bytes(ref, EMPTY_DATA)
    client.push_bytes(ref, payload)
    raw = signature_manifest_bytes(bundle_manifest, payload, signature, kid)
    digest = sha256_bytes(raw)
    by_digest = ref.with_digest(digest)
    client.put_manifest(by_digest, raw)
    found = referrers(client, ref, bundle_manifest.digest)
    if found is not None and any(d.get("digest") == digest for d in found):
        return Signed(by_digest, digest, kid, "referrers")
    tag = fallback_tag(bundle_manifest.digest)
    client.put_manifest(ref.with_tag(tag), raw)
    return Signed(by_digest, digest, kid, tag)


@dataclass(frozen=True)
class Verified:
    key: str  # the key id that signed
    signature: str  # the signature manifest's digest


def _candidates(client: RegistryClient, ref: Reference, digest: str) -> list[Manifest]:
    found = referrers(client, ref, digest)
    manifests: list[Manifest] = []
    if found is not None:
        for d in found:
            m = client.get_manifest_raw(ref.with_digest(d["digest"]))
            if m is not None:
                manifests.append(m)
    if not manifests:
        m = client.get_manifest_raw(ref.with_tag(fallback_tag(digest)))
        if m is not None:
            manifests.append(m)
    return manifests


def _check_one(client: RegistryClient, ref: Reference, bundle_manifest: Manifest, sig: Manifest,
               key: Ed25519PublicKey) -> str | None:
    """None when sig is a valid signature of bundle_manifest by key, else why not."""
    data = sig.data
    if data.get("artifactType") != SIGNATURE_TYPE:
        return f"{sig.digest} is not a bootpack signature"
    if (data.get("subject") or {}).get("digest") != bundle_manifest.digest:
        return f"signature {sig.digest} is about another manifest"
    layers = data.get("layers") or []
    if len(layers) != 1 or layers[0].get("mediaType") != PAYLOAD_TYPE or \
            not isinstance(layers[0].get("size"), int) or not 0 < layers[0]["size"] <= MAX_PAYLOAD:
        return f"signature {sig.digest} has no valid payload layer"
    kid = sig.annotations.get(A_KEY, "?")
    if kid != key_id(key):
        return f"signed by key {kid}, not by the given key {key_id(key)}"
    try:
        signature = base64.b64decode(sig.annotations.get(A_SIGNATURE, ""), validate=True)
    except ValueError:
        return f"signature {sig.digest}: the signature is not base64"
    with tempfile.TemporaryDirectory(prefix="bootpack-sig-") as tmp:
        target = Path(tmp) / "payload"
        client.fetch_blob(ref, str(layers[0]["digest"]), int(layers[0]["size"]), target)
        payload = target.read_bytes()
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        return f"signature {sig.digest} does not verify with key {key_id(key)} (tampered)"
    if payload != payload_bytes(bundle_manifest):
        return (f"signature {sig.digest} is valid but signs other content than this manifest "
                "(a changed annotation or a signature copied from another version)")
    return None


def verify_bundle_signature(client: RegistryClient, ref: Reference, bundle_manifest: Manifest,
                            key: Ed25519PublicKey) -> Verified:
    """Check that bundle_manifest (fetched from ref) carries a valid signature by key; raise
    SignatureError saying what is wrong otherwise."""
    candidates = _candidates(client, ref, bundle_manifest.digest)
    if not candidates:
        raise SignatureError(
            f"{ref}: refusing an unsigned version: no signature for {bundle_manifest.digest} "
            f"(neither in the referrers API nor at tag {fallback_tag(bundle_manifest.digest)}); "
            "publish it with `bootpack push --sign KEY`")
    reasons = []
    for sig in candidates:
        why = _check_one(client, ref, bundle_manifest, sig, key)
        if why is None:
            return Verified(key=key_id(key), signature=sig.digest)
        reasons.append(why)
    raise SignatureError(f"{ref}: refusing a wrongly signed or tampered version "
                         f"({bundle_manifest.digest}): " + "; ".join(reasons))
