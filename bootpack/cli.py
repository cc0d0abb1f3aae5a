"""The `bootpack` command. Thin: parse arguments, call the library, map errors to exit status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .errors import BootpackError
from .progress import NORMAL, QUIET, VERBOSE, Progress

EXIT_USAGE = 2
EXIT_INTERNAL = 70
DEBUG_ENV = "BOOTPACK_DEBUG"

Handler = Callable[[argparse.Namespace, Progress], int]


def _validate(args: argparse.Namespace, progress: Progress) -> int:
    from .spec import load_spec
    from .spec.secureboot import secure_boot_warnings

    loaded = load_spec(args.spec)
    spec = loaded.spec
    for warning in secure_boot_warnings(spec, loaded.base):
        print(f"{args.spec}: warning: {warning}", file=sys.stderr)
    print(f"{args.spec}: ok: bundle {spec.bundle.name} {spec.bundle.version}, "
          f"{len(spec.images)} image(s), {len(spec.entries)} entr{'y' if len(spec.entries) == 1 else 'ies'}, "
          f"{len(spec.hosts)} host(s), dhcp {spec.dhcp.mode}")
    return 0


def _build(args: argparse.Namespace, progress: Progress) -> int:
    from .compiler import build_bundle
    from .spec import load_spec
    from .spec.secureboot import secure_boot_warnings

    loaded = load_spec(args.spec)
    for warning in secure_boot_warnings(loaded.spec, loaded.base):
        print(f"{args.spec}: warning: {warning}", file=sys.stderr)
    result = build_bundle(loaded, args.output, syslinux_dir=args.syslinux_dir, progress=progress)
    print(f"{result.output}: {result.files} files, {result.size / 1e6:.1f} MB, {result.digest}")
    print(f"{result.archive}")
    return 0


def _cache_prune(args: argparse.Namespace, progress: Progress) -> int:
    from .images.cache import Cache

    cache = Cache()
    removed, freed = cache.prune(args.older_than)
    print(f"{cache.root}: removed {removed} entr{'y' if removed == 1 else 'ies'}, "
          f"freed {freed / 1e6:.1f} MB")
    return 0


def _cache_info(args: argparse.Namespace, progress: Progress) -> int:
    from .images.cache import Cache

    cache = Cache()
    print(f"{cache.root}: {len(cache.entries())} entries, {cache.size() / 1e6:.1f} MB")
    return 0


def _schema(args: argparse.Namespace, progress: Progress) -> int:
    from .spec.reference import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _add_appliance_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .appliance.cli import add_commands

    add_commands(commands)


def _push(args: argparse.Namespace, progress: Progress) -> int:
    from .release import publish

    result = publish(args.source, args.ref, image=args.image, with_image=not args.no_image,
                     force=args.force, insecure=args.insecure, progress=progress, sign=args.sign)
    b = result.bundle
    print(f"bundle {b.name} {b.version} {b.digest}")
    a = result.artifact
    print(f"artifact  {a.ref}@{a.digest}  {'pushed' if a.pushed else 'unchanged (already published)'}")
    if result.image is not None:
        i = result.image
        print(f"appliance {i.ref}@{i.digest}  {'pushed' if i.pushed else 'unchanged (already published)'}")
    if result.signature is not None:
        s = result.signature
        where = "referrers API" if s.where == "referrers" else f"tag {s.where}"
        print(f"signature {s.ref}  key {s.key}  ({where})")
    return 0


def _pull(args: argparse.Namespace, progress: Progress) -> int:
    from .registry import fetch

    result = fetch(args.ref, args.output, insecure=args.insecure, progress=progress,
                   public_key=args.verify)
    if args.verify is not None:
        print(f"signature ok: {result.ref}@{result.manifest_digest} signed by {args.verify}")
    print(f"{result.output}: {result.files} files, {result.size / 1e6:.1f} MB, {result.bundle_digest} "
          f"(from {result.ref}@{result.manifest_digest})")
    print(f"{result.archive}")
    return 0


def _key_generate(args: argparse.Namespace, progress: Progress) -> int:
    from .registry.signature import generate_key

    private, public, kid = generate_key(args.keyfile, args.public)
    print(f"private key {private} (keep it here, mode 0600)")
    print(f"public key  {public}")
    print(f"key id      {kid}")
    return 0


def _inspect(args: argparse.Namespace, progress: Progress) -> int:
    from .registry import inspect, inspect_table

    rows = inspect(args.ref, insecure=args.insecure)
    print(json.dumps(rows, indent=2) if args.json else inspect_table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bootpack",
        description="Compile a declarative TOML spec into a network-boot bundle for diskless "
        "machines: a /tftpboot tree with pxelinux menus and per-host configs, root file systems, "
        "DHCP and NFS snippets, a manifest and a reproducible archive.",
        epilog="Run `bootpack COMMAND --help` for the options of each command. "
        "Exit status: 0 ok, 2 bad input (the message says what to fix).",
    )
    parser.add_argument("--version", action="version", version=f"bootpack {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_const", dest="level", const=QUIET,
                           help="show only errors")
    verbosity.add_argument("-v", "--verbose", action="store_const", dest="level", const=VERBOSE,
                           help="also show each external command run")
    parser.set_defaults(level=NORMAL)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("validate", help="check a spec and report every problem",
                            description="Check a spec: TOML syntax, the schema, cross-field rules "
                            "(unique names/MACs/IPs, addresses inside the subnet, references "
                            "between sections) and that the files it names exist.")
    p.add_argument("spec", type=Path, metavar="SPEC", help="the spec file (TOML)")
    p.set_defaults(handler=_validate)

    p = commands.add_parser("build", help="compile a spec into a boot bundle directory and archive",
                            description="Compile SPEC into DIR (tftpboot/, etc/, bundle.json) and a "
                            "deterministic DIR.tar.gz next to it. The build writes a new version in "
                            ".DIR.bootpack/ and switches DIR and DIR.tar.gz to it together, only on "
                            "success; DIR must be absent, empty or an earlier bundle holding only its "
                            "own files (DIR/hosts/ is kept), and must not hold an input. Set "
                            "SOURCE_DATE_EPOCH to choose the archive's file times (default 0).")
    p.add_argument("spec", type=Path, metavar="SPEC", help="the spec file (TOML)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                   help="bundle directory to create or replace")
    p.add_argument("--syslinux-dir", type=Path, metavar="DIR",
                   help="folder holding pxelinux.0, ldlinux.c32, menu.c32, libutil.c32 and "
                   "libcom32.c32 (default: Debian's pxelinux and syslinux-common packages; "
                   "env BOOTPACK_SYSLINUX_DIR)")
    p.set_defaults(handler=_build)

    p = commands.add_parser("cache", help="show or prune the build cache",
                            description="Built images (root trees, initrds, squashfs, ramdisks) "
                            "are cached by the digest of their inputs in the user's cache folder "
                            "(env BOOTPACK_CACHE_DIR overrides it).")
    cache_commands = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    c = cache_commands.add_parser("prune", help="remove cached build results",
                                  description="Remove cached build results: all of them, or with "
                                  "--older-than those not used for that many days.")
    c.add_argument("--older-than", type=float, metavar="DAYS",
                   help="keep entries used within the last DAYS days")
    c.set_defaults(handler=_cache_prune)
    c = cache_commands.add_parser("info", help="show where the cache is and its size")
    c.set_defaults(handler=_cache_info)

    p = commands.add_parser("schema", help="print the spec's JSON Schema (for editors)",
                            description="Print the JSON Schema of the spec format on stdout, e.g. "
                            "for editor completion with taplo or Even Better TOML.")
    p.set_defaults(handler=_schema)

    insecure_help = ("talk plain HTTP to the registry instead of HTTPS (for the appliance image the "
                     "Docker engine decides: 127.0.0.0/8 and its insecure-registries)")
    p = commands.add_parser("push", help="publish a bundle and its appliance image to an OCI registry",
                            description="Publish SPEC (built first) or BUNDLE_DIR to the registry "
                            "repository REF: the bundle as an OCI artifact at REF:VERSION and the "
                            "appliance image at REF:VERSION-appliance (VERSION = [bundle] version); "
                            "REF:latest and REF:latest-appliance follow the newest push. Versions are "
                            "immutable: pushing the same bundle again changes nothing, a different "
                            "one under an existing version fails unless --force. Credentials come from "
                            "Docker's config (docker login, credHelpers, credsStore).")
    p.add_argument("source", type=Path, metavar="SPEC|BUNDLE_DIR", help="spec file or bundle directory")
    p.add_argument("ref", metavar="REF", help="repository without tag, e.g. registry.example.com/site/boot")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--image", metavar="IMAGE", help="local appliance image to push (default: the "
                       "local image labelled dev.bootpack.bundle.digest=<the bundle's digest>, baked "
                       "first when there is none)")
    which.add_argument("--no-image", action="store_true", help="push only the bundle artifact")
    p.add_argument("--force", action="store_true", help="replace a version that holds other content")
    p.add_argument("--insecure", action="store_true", help=insecure_help)
    p.add_argument("--sign", type=Path, metavar="KEY", help="sign the bundle artifact with this "
                   "Ed25519 private key (PKCS#8 PEM, from `bootpack key generate`); the key stays "
                   "here, only the signature is uploaded (OCI referrers, or tag sha256-HEX.sig)")
    p.set_defaults(handler=_push)

    p = commands.add_parser("pull", help="fetch a published bundle into a directory, verified",
                            description="Download the bundle at REF[:VERSION|@DIGEST] (default "
                            ":latest) into DIR and DIR.tar.gz. Checks the archive's digest, then every "
                            "file against bundle.json, in a new version folder; DIR and DIR.tar.gz are "
                            "switched to it only when all checks pass. DIR must be absent, empty or an "
                            "earlier bundle holding only its own files.")
    p.add_argument("ref", metavar="REF", help="e.g. registry.example.com/site/boot:1.0")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                   help="bundle directory to create or replace")
    p.add_argument("--insecure", action="store_true", help="talk plain HTTP to the registry")
    p.add_argument("--verify", type=Path, metavar="PUBKEY", help="refuse the version unless it "
                   "carries a valid signature by this Ed25519 public key (PEM); unsigned, wrongly "
                   "signed or tampered versions exit with status 2 and change nothing")
    p.set_defaults(handler=_pull)

    p = commands.add_parser("inspect", help="list the bundles and appliance images published in REF",
                            description="List every tag of the repository REF (or only REF:TAG or "
                            "REF@DIGEST), newest first: kind (bundle or appliance), bundle version, "
                            "creation time, size, manifest digest and bundle digest.")
    p.add_argument("ref", metavar="REF", help="e.g. registry.example.com/site/boot")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--insecure", action="store_true", help="talk plain HTTP to the registry")
    p.set_defaults(handler=_inspect)

    p = commands.add_parser("key", help="make a signing key pair (bootpack push --sign)",
                            description="Signing keys for published versions: Ed25519, standard PEM.")
    key_commands = p.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    k = key_commands.add_parser("generate", help="write a new Ed25519 key pair",
                                description="Write KEYFILE (the private key, PKCS#8 PEM, mode 0600: "
                                "keep it on the signing machine) and KEYFILE.pub (the public key, "
                                "SubjectPublicKeyInfo PEM: give it to `pull --verify` and the "
                                "appliances). Existing files are never overwritten.")
    k.add_argument("keyfile", type=Path, metavar="KEYFILE")
    k.add_argument("--public", type=Path, metavar="FILE", help="where the public key goes "
                   "(default KEYFILE.pub)")
    k.set_defaults(handler=_key_generate)
    _add_appliance_commands(commands)
    return parser


def _tolerant_streams() -> None:
    """Print what the terminal's encoding cannot show (a non-ASCII label under an ISO-8859-1
    or C locale) as escapes instead of dying with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = Progress(args.level)
    try:
        code: int = args.handler(args, progress)
        return code
    except BootpackError as exc:
        print(f"bootpack: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        # Permission denied, disk full, read-only file system: name the file and stop cleanly.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"bootpack: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        from .bundle.output import interrupted_note

        note = interrupted_note()
        print(f"bootpack: interrupted{'; ' + note if note else ''}", file=sys.stderr)
        return 130
    except Exception as exc:
        # A bug, not bad input: one line (exit 70, EX_SOFTWARE) unless the traceback is asked for.
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"bootpack: internal error: {type(exc).__name__}: {exc}; this is a bug in bootpack. "
              f"Run again with {DEBUG_ENV}=1 for the traceback and report it", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
