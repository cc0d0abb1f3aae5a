"""The appliance's subcommands: `serve`, `health` and `image` (added to the `bootpack` parser)."""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BootpackError
from ..progress import Progress
from ..spec.model import Architecture, DhcpMode
from .runtime import Peer, parse_peer
from .state import DEFAULT_STATUS_PORT, default_runtime_dir
from .timeline import DEFAULT_STALL_SECONDS

if TYPE_CHECKING:  # imported where used: `bootpack serve` starts without the registry client
    from ..registry.client import RegistryClient
    from ..registry.reference import Reference
    from .image import ImageResult


def _address(value: str) -> IPv4Interface | IPv4Address:
    try:
        return IPv4Interface(value) if "/" in value else IPv4Address(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IPv4 address (IP or IP/PREFIX)") from None


def _range(value: str) -> tuple[IPv4Address, IPv4Address]:
    first, sep, last = value.partition("-")
    try:
        pool = (IPv4Address(first.strip()), IPv4Address(last.strip()))
    except ValueError:
        pool = None
    if not sep or pool is None or pool[0] > pool[1]:
        raise argparse.ArgumentTypeError(f"{value!r}: give the pool as FIRST-LAST, e.g. "
                                         "10.1.2.100-10.1.2.200")
    return pool


def _dhcp_mode(value: str) -> DhcpMode:
    modes: dict[str, DhcpMode] = {"server": "server", "proxy": "proxy", "off": "none", "none": "none"}
    if value not in modes:
        raise argparse.ArgumentTypeError(f"{value!r}: use server, proxy or off")
    return modes[value]


def _peer(value: str) -> Peer:
    try:
        return parse_peer(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _serve(args: argparse.Namespace, progress: Progress) -> int:
    from .image import GENERIC_NOTE_FILE
    from .serve import ServeOptions, serve

    def pick(value: object, env: str, parse: object) -> object:
        if value is not None:
            return value
        raw = _env(env)
        if raw is None:
            return None
        try:
            return parse(raw)  # type: ignore[operator]
        except argparse.ArgumentTypeError as exc:
            raise BootpackError(f"${env}: {exc}") from None

    force = args.force_dhcp or (_env("BOOTPACK_FORCE_DHCP") or "0").lower() in ("1", "yes", "true")
    bundle: Path = args.bundle
    ref = args.bundle_ref or _env("BOOTPACK_BUNDLE_REF")
    verify = args.verify or (Path(v) if (v := _env("BOOTPACK_VERIFY")) else None)
    if ref is not None:
        insecure = args.insecure or (_env("BOOTPACK_INSECURE") or "0").lower() in ("1", "yes", "true")
        pull_dir = args.pull_dir or (Path(d) if (d := _env("BOOTPACK_PULL_DIR")) else
                                     args.runtime_dir / "bundle")
        bundle = pull_for_serve(ref, pull_dir, verify, insecure, progress)
    elif (bundle / GENERIC_NOTE_FILE).exists() and not (bundle / "bundle.json").exists():
        raise BootpackError("this is the generic appliance image, which holds no bundle: give "
                            "--bundle REGISTRY/REPO:VERSION (or BOOTPACK_BUNDLE_REF), with --verify "
                            "PUBKEY for signed versions")
    elif verify is not None:
        raise BootpackError("--verify checks a published version: give it with --bundle "
                            "REGISTRY/REPO:VERSION (a bundle directory or baked image is served as is)")
    options = ServeOptions(
        bundle=bundle,
        interface=args.interface or _env("BOOTPACK_INTERFACE"),
        address=pick(args.address, "BOOTPACK_ADDRESS", _address),  # type: ignore[arg-type]
        dhcp=pick(args.dhcp, "BOOTPACK_DHCP", _dhcp_mode),  # type: ignore[arg-type]
        dhcp_range=pick(args.range, "BOOTPACK_RANGE", _range),  # type: ignore[arg-type]
        force_dhcp=force,
        runtime=args.runtime_dir,
        host_roots=args.host_roots or (Path(h) if (h := _env("BOOTPACK_HOST_ROOTS")) else None),
        peers=tuple(args.peer or pick(None, "BOOTPACK_PEERS", _peers) or ()),  # type: ignore[arg-type]
        peer_name=args.peer_name or _env("BOOTPACK_PEER_NAME"),
        status=not (args.no_status or (_env("BOOTPACK_STATUS") or "").lower() in ("0", "off", "no")),
        status_port=args.status_port or int(_env("BOOTPACK_STATUS_PORT") or DEFAULT_STATUS_PORT),
        status_token=args.status_token or _env("BOOTPACK_STATUS_TOKEN"),
        stall_seconds=args.stall_seconds or float(_env("BOOTPACK_STALL_SECONDS")
                                                  or DEFAULT_STALL_SECONDS),
    )
    return serve(options)


def _peers(value: str) -> tuple[Peer, ...]:
    """$BOOTPACK_PEERS: NAME=URL entries separated by spaces or commas."""
    return tuple(_peer(v) for v in re.split(r"[\s,]+", value.strip()) if v)


def pull_for_serve(ref: str, target: Path, verify: Path | None, insecure: bool,
                   progress: Progress) -> Path:
    """`serve --bundle REF`: pull (and with --verify check the signature of) the published
    version into target at every start, so one generic appliance image serves any version and
    a rollback is a restart with another tag. A refused version stops serve with exit status 2
    before any daemon starts."""
    from ..registry.pull import fetch
    from .supervisor import Output

    out = Output()
    out.line("bootpack", f"pulling {ref} into {target}"
             + (f", verifying its signature with {verify}" if verify else " (no --verify: unsigned "
                "versions are accepted)"))
    result = fetch(ref, target, insecure=insecure, progress=progress, public_key=verify)
    out.line("bootpack", f"pulled {result.ref}@{result.manifest_digest}: bundle "
             f"{result.bundle.name} {result.bundle.version} ({result.bundle_digest})"
             + (", signature ok" if verify else ""))
    return result.output


def _status(args: argparse.Namespace, progress: Progress) -> int:
    from .state import ServeState
    from .status import fetch, render, status_url, watch

    if args.server:
        url = status_url(args.server)
    else:
        state = ServeState.read(args.runtime_dir)
        if state.status_url is None:
            raise BootpackError("this appliance runs without status tracking (--no-status)")
        url = status_url(state.status_url)
    token = args.token or _env("BOOTPACK_STATUS_TOKEN")
    if args.watch:
        try:
            watch(url, token, args.json, args.interval)
        except KeyboardInterrupt:
            return 0
    print(render(fetch(url, token), args.json), end="")
    return 0


def _health(args: argparse.Namespace, progress: Progress) -> int:
    from .health import run_health

    try:
        ok, results = run_health(args.runtime_dir, retries=args.retries)
    except BootpackError as exc:  # exit 1, not 2: Docker reserves 2 in health checks
        print(f"unhealthy: {exc}")
        return 1
    for r in results:
        if not args.quiet_ok or not r.ok:
            print(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}")
    print("healthy" if ok else "unhealthy")
    return 0 if ok else 1


def _platforms(value: str) -> tuple[Architecture, ...]:
    from .image import parse_platforms

    try:
        return parse_platforms(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _image(args: argparse.Namespace, progress: Progress) -> int:
    from ..bundle import Bundle, layout
    from ..bundle.manifest import DIGEST_KEY
    from ..spec.model import build_host_architecture
    from .image import bake_image, build_wheels, platform_name, platform_tag

    source: Path | None = args.source
    platforms: tuple[Architecture, ...] = args.platform or (build_host_architecture(),)
    if len(platforms) > 1 and not args.push:
        raise BootpackError("--platform with several platforms needs --push: the local Docker "
                            "engine holds one platform per tag, the registry holds the index over "
                            "them (or build one --platform at a time)")
    if args.generic and source is not None:
        raise BootpackError("--generic bakes no bundle: give either SPEC|BUNDLE_DIR or --generic")
    if not args.generic and source is None:
        raise BootpackError("give SPEC|BUNDLE_DIR to bake, or --generic for the image that pulls "
                            "its bundle at start")
    registry = _image_registry(args) if args.push else None  # a bad REF fails before the build

    def bake(bundle: Bundle | None) -> list[ImageResult]:
        if len(platforms) == 1:
            return [bake_image(bundle, args.tag, base=args.base, architecture=platforms[0],
                               progress=progress)]
        with progress.step("Building wheels of bootpack and its dependencies (for every platform)"):
            build_wheels(Path(tmp) / ".wheels", progress)  # no bundle name starts with a dot
        return [bake_image(bundle, platform_tag(args.tag, a), base=args.base, architecture=a,
                           progress=progress, host_wheels=Path(tmp) / ".wheels")
                for a in platforms]

    with tempfile.TemporaryDirectory(prefix="bootpack-bundle-") as tmp:
        if source is None:  # --generic
            results = bake(None)
        elif (source / layout.MANIFEST).is_file():
            results = bake(Bundle.open(source))
        else:
            from ..compiler import build_bundle
            from ..spec import load_spec

            loaded = load_spec(source)
            built = build_bundle(loaded, Path(tmp) / loaded.spec.bundle.name, progress=progress)
            results = bake(built.bundle)
    for result in results:
        what = ("generic: run it with --bundle REGISTRY/REPO:VERSION" if args.generic
                else f"bundle {result.labels[DIGEST_KEY]}")
        print(f"{result.tag}: {result.id} ({result.size / 1e6:.0f} MB), "
              f"{platform_name(result.architecture)}, {what}")
    if registry is not None:
        _push_appliance(registry, results, progress)
    return 0


def _image_registry(args: argparse.Namespace) -> tuple[RegistryClient, Reference]:
    """(registry client, reference) for `image --push`, checked before anything is built."""
    from ..registry.client import connect
    from ..registry.reference import parse_reference

    try:
        ref = parse_reference(args.tag, allow_digest=False)
    except BootpackError as exc:
        raise BootpackError(f"--push pushes to the registry -t names: {exc}") from None
    if ref.tag is None:
        raise BootpackError(f"--push {args.tag}: give the tag to push, e.g. {args.tag}:1.0")
    return connect(ref.registry, args.insecure), ref


def _push_appliance(registry: tuple[RegistryClient, Reference], results: list[ImageResult],
                    progress: Progress) -> None:
    """Push the images; with several platforms, each at TAG-ARCH and the index at TAG."""
    from ..registry.image import docker_client, push_image, push_platform_index
    from .image import platform_name

    client, ref = registry
    engine = docker_client()
    digests = []
    for result in results:
        target = ref if len(results) == 1 else ref.with_tag(result.tag.rpartition(":")[2])
        with progress.step(f"Pushing {platform_name(result.architecture)} image to {target}"):
            digests.append(push_image(engine, result.id, target, progress))
        print(f"pushed {target}@{digests[-1]}  {platform_name(result.architecture)}")
    if len(results) > 1:
        with progress.step(f"Pushing the multi-platform index to {ref}"):
            digest = push_platform_index(client, ref, digests)
        print(f"index  {ref}@{digest}  "
              + ", ".join(platform_name(r.architecture) for r in results))


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runtime_default = default_runtime_dir()

    p = commands.add_parser(
        "serve", help="serve a bundle: DHCP, TFTP, HTTP and NFS, supervised",
        description="Serve BUNDLE_DIR (or the published version --bundle REF, pulled and verified "
        "at start) on one interface: ISC dhcpd (server mode; Kea with its HA hook for a --peer "
        "pair) or dnsmasq (proxy mode), tftpd-hpa, nginx and NFS-Ganesha with rpcbind. "
        "Configs are rendered for the "
        "network it runs on into --runtime-dir (the bundle is never written): when the address "
        "or subnet differ from the spec's, pxelinux configs, DHCP, exports and URLs follow. "
        "Daemons are restarted with backoff; SIGTERM stops everything. This is the appliance "
        "image's entry point.",
        epilog="Environment: BOOTPACK_INTERFACE, BOOTPACK_ADDRESS, BOOTPACK_DHCP, BOOTPACK_RANGE, "
        "BOOTPACK_FORCE_DHCP=1, BOOTPACK_RUNTIME_DIR, BOOTPACK_HOST_ROOTS, BOOTPACK_BUNDLE_REF, "
        "BOOTPACK_VERIFY, BOOTPACK_INSECURE=1, BOOTPACK_PULL_DIR, BOOTPACK_PEERS (space separated), "
        "BOOTPACK_PEER_NAME, BOOTPACK_STATUS=off, BOOTPACK_STATUS_PORT, BOOTPACK_STATUS_TOKEN, "
        "BOOTPACK_STALL_SECONDS stand for the options; "
        "BOOTPACK_RESTART_DELAY sets the first restart delay in seconds (default 1).")
    p.add_argument("bundle", type=Path, metavar="BUNDLE_DIR", nargs="?",
                   default=Path(os.environ.get("BOOTPACK_BUNDLE", ".")),
                   help="the bundle directory (default $BOOTPACK_BUNDLE); ignored with --bundle")
    p.add_argument("--bundle", dest="bundle_ref", metavar="REGISTRY/REPO:VERSION|@sha256:DIGEST",
                   help="serve a published version: pull it at start (verified like `bootpack "
                   "pull`) into --pull-dir and serve that; a rollback is a restart with another "
                   "tag (env BOOTPACK_BUNDLE_REF)")
    p.add_argument("--verify", type=Path, metavar="PUBKEY",
                   help="with --bundle: refuse to start (exit 2) unless the version carries a valid "
                   "signature by this Ed25519 public key (env BOOTPACK_VERIFY)")
    p.add_argument("--insecure", action="store_true",
                   help="with --bundle: plain HTTP to the registry (env BOOTPACK_INSECURE=1)")
    p.add_argument("--pull-dir", type=Path, metavar="DIR",
                   help="where --bundle puts the pulled bundle (default RUNTIME_DIR/bundle; the "
                   "appliance image uses the volume /var/lib/bootpack/bundle; env BOOTPACK_PULL_DIR)")
    p.add_argument("-i", "--interface", metavar="IFACE",
                   help="serve on this interface (default: the one holding --address, or the "
                   "only one with an IPv4 address)")
    p.add_argument("-a", "--address", type=_address, metavar="IP[/PREFIX]",
                   help="the server address clients use (default: the interface's); a prefix "
                   "sets the served subnet")
    p.add_argument("--dhcp", type=_dhcp_mode, metavar="server|proxy|off",
                   help="override the spec's dhcp.mode")
    p.add_argument("--range", type=_range, metavar="FIRST-LAST",
                   help="DHCP pool (default: the spec's, moved to the served subnet at the same "
                   "offsets)")
    p.add_argument("--force-dhcp", action="store_true",
                   help="start the DHCP server even if another DHCP server answers")
    p.add_argument("--peer", type=_peer, action="append", metavar="NAME=http://IP[:PORT]/",
                   help="DHCP high availability: serve DHCP with Kea's HA hook (hot-standby) "
                   "together with the other appliances given; repeat for each member, this one "
                   "included, the primary first and the standby second, the same list on every "
                   "member (this one is found by its address). Port default 8000 (env "
                   "BOOTPACK_PEERS, space separated)")
    p.add_argument("--peer-name", metavar="NAME",
                   help="which --peer this appliance is (default: the one on its address)")
    p.add_argument("--runtime-dir", type=Path, default=runtime_default, metavar="DIR",
                   help=f"where runtime configs and state go (default {runtime_default})")
    p.add_argument("--host-roots", type=Path, metavar="DIR",
                   help="where writable per-host root trees live (default RUNTIME_DIR/hosts; "
                   "mount a volume there to keep them)")
    p.add_argument("--no-status", action="store_true",
                   help="no boot timeline, /metrics or dashboard (BOOTPACK_STATUS=off)")
    p.add_argument("--status-port", type=int, metavar="PORT",
                   help=f"loopback port of the status site nginx proxies /bootpack/ and /metrics "
                   f"to (default {DEFAULT_STATUS_PORT})")
    p.add_argument("--status-token", metavar="TOKEN",
                   help="require this token for the dashboard, /bootpack/api/status and /metrics")
    p.add_argument("--stall-seconds", type=float, metavar="S",
                   help="a boot that reaches no new stage for this long is stalled (default "
                   f"{DEFAULT_STALL_SECONDS:.0f})")
    p.set_defaults(handler=_serve)

    p = commands.add_parser(
        "health", help="probe a running `bootpack serve` (TFTP, HTTP, NFS, daemons)",
        description="Exit 0 when every daemon runs and pxelinux.0 reads over TFTP, a kernel over "
        "HTTP and every export lists over NFS; 1 otherwise. The appliance's HEALTHCHECK.")
    p.add_argument("--runtime-dir", type=Path, default=runtime_default, metavar="DIR")
    p.add_argument("--retries", type=int, default=1, help="tries before reporting unhealthy")
    p.add_argument("--quiet-ok", action="store_true", help="print only failures")
    p.set_defaults(handler=_health)

    p = commands.add_parser(
        "status", help="where is each machine in its boot? (a running appliance's timeline)",
        description="Show every client that tried to boot from a running appliance: host name "
        "(or unknown MAC), MAC, IP, entry, furthest stage (disc, offer, ack, nbp, cfg, kernel, "
        "initrd, root, up), when, seconds spent per stage, the last boot's duration, and whether "
        "it stalled or failed. Reads http://SERVER/bootpack/api/status.")
    p.add_argument("--server", metavar="URL",
                   help="the appliance, e.g. http://10.0.0.2 (default: the one whose state is in "
                   "--runtime-dir, i.e. inside the appliance container)")
    p.add_argument("--runtime-dir", type=Path, default=runtime_default, metavar="DIR")
    p.add_argument("--json", action="store_true", help="the full report (every boot's events) as JSON")
    p.add_argument("--watch", action="store_true", help="redraw every --interval seconds")
    p.add_argument("--interval", type=float, default=2.0, metavar="S")
    p.add_argument("--token", metavar="TOKEN", help="access token (default $BOOTPACK_STATUS_TOKEN)")
    p.set_defaults(handler=_status)

    p = commands.add_parser(
        "image", help="bake a bundle into a boot-appliance container image",
        description="Build the appliance image (bootpack/appliance/Dockerfile) holding "
        "SOURCE (a bundle directory, or a spec that is built first), labelled with OCI "
        "annotations and the bundle digest. Run it with `docker run` (see docs/appliance.md).")
    p.add_argument("source", type=Path, metavar="SPEC|BUNDLE_DIR", nargs="?")
    p.add_argument("--generic", action="store_true",
                   help="bake no bundle: the generic appliance image, run with `--bundle REF`")
    p.add_argument("-t", "--tag", required=True, metavar="REF", help="image reference, e.g. boot:1.0")
    p.add_argument("--base", metavar="IMAGE",
                   help="base image (Debian 12 based; default debian:bookworm-slim, for linux/arm64 "
                   "arm64v8/debian:bookworm-slim, made locally with mmdebstrap when missing)")
    p.add_argument("--platform", type=_platforms, metavar="PLATFORM[,PLATFORM]",
                   help="linux/amd64 and/or linux/arm64 (default: this machine's); a foreign one "
                   "builds under binfmt_misc + qemu-user-static (minutes); several need --push")
    p.add_argument("--push", action="store_true",
                   help="push the image to the registry REF names; with several platforms, each "
                   "at REF's TAG-amd64/TAG-arm64 and a multi-platform index at REF")
    p.add_argument("--insecure", action="store_true",
                   help="talk plain HTTP to the registry for the index (the Docker engine decides "
                   "for the images: 127.0.0.0/8 and its insecure-registries)")
    p.set_defaults(handler=_image)
