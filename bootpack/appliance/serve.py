"""The I/O side of `bootpack serve`: read the bundle, look at the interface, write the runtime
dir, check for another DHCP server, then supervise the daemons until SIGTERM.

The bundle itself is never written to. The runtime dir holds the rendered configs and the TFTP
root: the bundle's tftpboot files linked (or copied where links cannot cross file systems) next
to the pxelinux.cfg/ rendered for this network, so tftpd can stay chrooted in it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from types import FrameType

from ..bundle import layout
from ..bundle.manifest import Bundle
from ..errors import BootpackError
from ..external import run
from ..files import walk
from ..render.nfs import nfs_export_list, writable_hosts
from ..spec.load import parse_spec
from ..spec.model import DhcpMode, Spec
from . import dhcp_probe
from .bootlog import is_tracking_noise, parse_line
from .metrics import Metrics
from .runtime import (
    RUNTIME_CONFIG_DIRS,
    RUNTIME_TFTP,
    Paths,
    Peer,
    Runtime,
    first_loader,
    high_availability,
    render_runtime,
    runtime_site,
)
from .state import DEFAULT_STATUS_PORT, RUNTIME_DIR, DaemonState, ServeState
from .statusweb import PREFIX, StatusSite
from .supervisor import Output, Supervisor
from .timeline import DEFAULT_STALL_SECONDS, BundleInfo, Timeline

SYSLOG_SOCKET = Path("/dev/log")


@dataclass(frozen=True)
class ServeOptions:
    bundle: Path
    interface: str | None = None
    address: IPv4Interface | IPv4Address | None = None
    dhcp: DhcpMode | None = None
    dhcp_range: tuple[IPv4Address, IPv4Address] | None = None
    force_dhcp: bool = False
    runtime: Path = RUNTIME_DIR
    host_roots: Path | None = None
    probe_timeout: float = 2.5
    peers: tuple[Peer, ...] = ()  # --peer: Kea HA (server mode)
    peer_name: str | None = None  # --peer-name: which peer this is (default: by address)
    status: bool = True  # boot timeline, /metrics and the dashboard
    status_port: int = DEFAULT_STATUS_PORT  # on 127.0.0.1, behind nginx
    status_token: str | None = None
    stall_seconds: float = DEFAULT_STALL_SECONDS


def load_bundle_spec(bundle: Bundle) -> Spec:
    path = bundle.directory / layout.SPEC
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BootpackError(f"{bundle.directory}: the bundle has no {layout.SPEC}; rebuild it with this "
                            "bootpack (`bootpack build`)") from None
    return parse_spec(data, source=str(path))


def interface_addresses(interface: str | None = None) -> dict[str, list[IPv4Interface]]:
    """Interface name -> its IPv4 addresses with prefix (from `ip -j -4 addr`)."""
    command = ["ip", "-j", "-4", "addr", "show"] + (["dev", interface] if interface else [])
    result = run(command, what="listing the interfaces")
    found: dict[str, list[IPv4Interface]] = {}
    for link in json.loads(result.stdout or b"[]"):
        found[link["ifname"]] = [IPv4Interface(f"{a['local']}/{a['prefixlen']}")
                                 for a in link.get("addr_info", []) if a.get("family") == "inet"]
    return found


def choose_interface(options: ServeOptions) -> tuple[str, IPv4Interface | None]:
    """The serving interface and its address that matches --address (or its first address)."""
    table = interface_addresses()
    name = options.interface
    if name is None:
        wanted = options.address.ip if isinstance(options.address, IPv4Interface) else options.address
        candidates = [n for n, addrs in table.items() if n != "lo" and addrs
                      and (wanted is None or any(a.ip == wanted for a in addrs))]
        if len(candidates) != 1:
            raise BootpackError(f"cannot tell which interface to serve on (candidates: "
                                f"{', '.join(candidates) or 'none'}); give --interface IFACE")
        name = candidates[0]
    if name not in table:
        raise BootpackError(f"--interface {name}: no such interface (have {', '.join(table)})")
    addrs = table[name]
    if options.address is not None:
        ip = options.address.ip if isinstance(options.address, IPv4Interface) else options.address
        match = [a for a in addrs if a.ip == ip]
        return name, match[0] if match else None
    return name, addrs[0] if addrs else None


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def prepare_runtime(paths: Paths, runtime: Runtime) -> None:
    """Write the runtime dir from scratch: configs, empty state files, the TFTP root."""
    root = Path(paths.runtime)
    tftp = root / RUNTIME_TFTP
    if tftp.exists():
        shutil.rmtree(tftp)
    root.mkdir(parents=True, exist_ok=True)
    # Every daemon is started afresh: a pid file left by a crash (a restarted container reuses
    # pids) would make kea-dhcp4 refuse to start ("already running?").
    for stale in root.glob("*.pid"):
        stale.unlink()
    for sub in ("nginx/body", "nginx/proxy", "nginx/fastcgi", "nginx/uwsgi", "nginx/scgi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    source = Path(paths.bundle) / layout.TFTP_DIR
    tftp.mkdir(parents=True, exist_ok=True)
    for path in walk(source):
        rel = path.relative_to(source)
        if rel.parts[0] == layout.PXE_CONFIG_DIR:
            continue  # the runtime renders its own
        if path.is_dir():
            if not path.is_symlink():
                (tftp / rel).mkdir(exist_ok=True)
        elif rel.parts[0] in RUNTIME_CONFIG_DIRS and path.name.endswith(".cfg"):
            continue  # rendered by the runtime (GRUB's modules are taken as they are)
        elif not (path.name.endswith(".img") and path.name.startswith("squashfs")):
            _link_or_copy(path, tftp / rel)  # squashfs: served over HTTP only, from the bundle
    for rel_name, text in runtime.files.items():
        target = root / rel_name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(0o644)
    for name in runtime.empty_files:
        (root / name).write_text("")
    for folder in (tftp, *[p for p in tftp.rglob("*") if p.is_dir()]):
        folder.chmod(0o755)


def prepare_host_roots(spec: Spec, bundle: Path, host_roots: Path, names: list[str],
                       out: Output) -> None:
    """A writable copy of the image's root tree for each writable host, made once and kept."""
    for host in spec.hosts:
        if host.name not in names:
            continue
        target = host_roots / host.name
        if target.exists():
            continue
        entry = spec.host_entry(host)
        assert entry.image is not None
        source = bundle / layout.root_tree_path(entry.image)
        out.line("bootpack", f"making writable root for {host.name}: {target} (from {source})")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{host.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        run(["cp", "-a", source, staging], what=f"copying {host.name}'s writable root")
        os.rename(staging, target)


class SyslogListener:
    """Receives datagrams on /dev/log (tftpd-hpa only logs to syslog) and prints them."""

    FORWARD = {"in.tftpd": "tftpd"}

    def __init__(self, out: Output, path: Path = SYSLOG_SOCKET) -> None:
        self.out, self.path = out, path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        path.chmod(0o666)
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                raw = self.sock.recv(8192)
            except OSError:
                return
            text = raw.decode(errors="replace")
            if text.startswith("<") and ">" in text:
                text = text.split(">", 1)[1]
            # "Nov 22 04:00:00 in.tftpd[12]: message" -> name from the tag, the message.
            head, _, message = text.partition(": ")
            tag = head.rsplit(" ", 1)[-1].split("[", 1)[0] if message else "syslog"
            if tag in self.FORWARD:  # the others log to stderr too
                self.out.line(self.FORWARD[tag], message)

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def _syslog_free(path: Path = SYSLOG_SOCKET) -> bool:
    """True when nobody listens on /dev/log (in a container); a stale socket left by a killed
    earlier run is removed."""
    if not path.exists():
        return True
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink()
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def tftp_file_size(root: Path) -> Callable[[str], int | None]:
    """Size of a file under the TFTP root (None: missing or outside it): tftpd logs only the
    request, so the timeline asks here whether the file exists and how big it is."""
    base = root.resolve()

    def size(path: str) -> int | None:
        try:
            target = (base / path.lstrip("/")).resolve()
            if not target.is_relative_to(base) or not target.is_file():
                return None
            return target.stat().st_size
        except OSError:
            return None

    return size


def start_status(options: ServeOptions, spec: Spec, bundle: Bundle, site_address: str, mode: str,
                 tftp_root: Path, out: Output,
                 daemons: Callable[[], dict[str, DaemonState]]) -> StatusSite:
    """The boot timeline fed by every daemon line, its metrics and the status site."""
    metrics = Metrics([e.name for e in spec.entries])
    timeline = Timeline(spec, own_address=site_address, stall_seconds=options.stall_seconds,
                        file_size=tftp_file_size(tftp_root), listener=metrics)
    metrics.watch(daemons, options.runtime, timeline.view)

    def tap(name: str, text: str) -> None:
        event = parse_line(name, text)
        if event is not None:
            timeline.feed(event)

    out.taps.append(tap)
    out.hide = is_tracking_noise
    manifest = bundle.manifest
    site = StatusSite(timeline, metrics, BundleInfo(name=manifest.name, version=manifest.version,
                                                     digest=manifest.digest),
                      address=site_address, mode=mode, token=options.status_token,
                      log=lambda text: out.line("status", text))
    try:
        site.start(options.status_port)
    except OSError as exc:
        raise BootpackError(f"the status site cannot listen on 127.0.0.1:{options.status_port} "
                            f"({exc}); give another --status-port, or --no-status") from None
    return site


def check_no_other_dhcp(interface: str, timeout: float, own: IPv4Address,
                        partners: frozenset[str] = frozenset()) -> None:
    try:
        offers = dhcp_probe.probe(interface, timeout=timeout)
    except OSError as exc:
        raise BootpackError(f"could not check {interface} for another DHCP server ({exc}); "
                            "give --force-dhcp to start the DHCP server anyway") from None
    others = sorted({o.server for o in offers if o.server != str(own) and o.server not in partners})
    if others:
        raise BootpackError(
            f"another DHCP server answers on {interface}: {', '.join(others)}. Two servers would "
            "fight over the clients: use --dhcp proxy (boot data only) or --dhcp off, or "
            "--force-dhcp if you are sure")


def serve(options: ServeOptions, out: Output | None = None) -> int:
    out = out or Output()
    started = time.monotonic()
    # The real folder, not the link a build or pull leaves at the output path: NFS-Ganesha does
    # not follow a symlink in an export path, and the daemons should keep serving this version
    # even if the link is switched while they run.
    opened = Bundle.open(options.bundle.resolve())
    bundle, manifest = opened.directory, opened.manifest
    spec = load_bundle_spec(opened)
    interface, iface_address = choose_interface(options)
    host_roots = options.host_roots or options.runtime / layout.HOSTS_DIR
    rsite = runtime_site(spec, root=str(bundle), address=options.address, interface=iface_address,
                         mode=options.dhcp, dhcp_range=options.dhcp_range,
                         host_roots=str(host_roots.absolute()))
    site = rsite.site
    for warning in rsite.warnings:
        out.line("bootpack", f"warning: {warning}")
    paths = Paths(bundle=str(bundle), runtime=str(options.runtime.absolute()))
    ha = None
    if options.peers:
        if site.mode != "server":
            raise BootpackError(f"--peer pairs DHCP servers (Kea HA), but DHCP is {site.mode} here; "
                                "proxy-DHCP keeps no leases: run any number of proxy appliances "
                                "side by side without --peer")
        ha = high_availability(options.peers, site.address, options.peer_name)
        out.line("bootpack", f"DHCP high availability (Kea, hot-standby): this is {ha.this} "
                 f"({ha.role(ha.me)}), peers " + ", ".join(f"{p.name}={p.url}" for p in ha.peers))
    runtime = render_runtime(spec, site, paths, interface, ha=ha,
                             status_port=options.status_port if options.status else None)
    out.line("bootpack", f"serving {manifest.name} {manifest.version} ({manifest.digest}) "
             f"on {interface} as {site.address} ({site.subnet}), DHCP {site.mode}")
    if site.mode == "server" and not options.force_dhcp:
        partners = frozenset(str(p.address) for p in options.peers)
        check_no_other_dhcp(interface, options.probe_timeout, site.address, partners)
    prepare_runtime(paths, runtime)
    prepare_host_roots(spec, bundle, host_roots, [h.name for h in writable_hosts(spec, site)], out)
    used = [e.image for e in spec.entries if e.image is not None]
    served = ServeState(
        pid=os.getpid(), bundle=str(bundle), digest=manifest.digest, interface=interface,
        address=str(site.address), subnet=str(site.subnet), mode=site.mode,
        http_base=site.http_base, loader=first_loader(spec),
        kernel=layout.kernel_path(used[0]) if used else None,
        # Health lists the shared exports; a writable host's export answers only that host.
        exports=tuple(e.path for e in nfs_export_list(spec, site) if not e.writable),
        status_url=f"{site.http_base}{PREFIX}/" if options.status else None)
    runtime_dir = Path(paths.runtime)

    def write_state(daemons: dict[str, DaemonState]) -> None:
        served.model_copy(update={"daemons": daemons}).write(runtime_dir)

    syslog = SyslogListener(out) if _syslog_free() else None
    supervisor = Supervisor(runtime.services, output=out, on_change=write_state)
    status = (start_status(options, spec, opened, str(site.address), site.mode,
                           Path(paths.tftp_root), out, supervisor.state)
              if options.status else None)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        out.line("bootpack", f"{signal.Signals(signum).name}: stopping")
        supervisor.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    out.line("bootpack", f"runtime ready in {time.monotonic() - started:.1f} s; starting daemons")
    try:
        return supervisor.run()
    finally:
        if syslog is not None:
            syslog.close()
        if status is not None:
            status.close()
