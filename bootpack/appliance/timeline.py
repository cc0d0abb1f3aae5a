"""Per-host boot timelines, keyed by MAC, built from boot events (bootpack.appliance.bootlog).

A boot runs through stages in this order; a host's stage is the furthest one its current boot
reached:

  dhcp-discover, dhcp-offer, dhcp-ack   the PXE ROM's DHCP (server mode: dhcpd's lines; proxy
                                        mode: dnsmasq's answer to the PXE DISCOVER is discover and
                                        offer, its boot-server answer the ack)
  loader                                the NBP (pxelinux.0) and its modules, over TFTP, or
                                        ipxe/boot.ipxe (what a BIOS iPXE ROM is handed)
  config                                the loader's config: the per-host file or the default menu
  kernel, initrd                        over TFTP or HTTP (bytes, seconds)
  root                                  the squashfs over HTTP (live entries), or the NFS root
                                        mount starting (nfs entries: the client's NFSv4 session
                                        or its NFSv3 MOUNT lookup, from Ganesha and rpcbind)
  up                                    the booted system (or a test initrd) reported itself

Clients are named by IP in TFTP and HTTP logs: the IP is mapped to a MAC through the DHCP
offers and acks seen (and the spec's fixed addresses). A DHCP exchange after the kernel stage
is the booted system's own and does not start a new boot; one after `up`, a stall or before the
kernel does. A boot that has not reached a new stage for `stall_seconds` is stalled at its
last stage. Each host keeps its last `history` boots. Everything is in memory: the store lives
in the `bootpack serve` process, so it survives a daemon restart, not an appliance restart.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..spec.model import Architecture, Host, Spec
from .bootlog import (
    BootEvent,
    DhcpEvent,
    FileEvent,
    FileKind,
    NfsMount,
    TftpError,
    architecture_of,
    config_mac,
    image_of,
)

Stage = Literal["dhcp-discover", "dhcp-offer", "dhcp-ack", "loader", "config", "kernel", "initrd",
                "root", "up"]
STAGES: tuple[Stage, ...] = ("dhcp-discover", "dhcp-offer", "dhcp-ack", "loader", "config", "kernel",
                             "initrd", "root", "up")
RANK = {s: i for i, s in enumerate(STAGES)}
HostState = Literal["booting", "up", "stalled"]
FILE_STAGES: dict[FileKind, Stage] = {"loader": "loader", "config": "config", "kernel": "kernel",
                                      "initrd": "initrd", "root": "root"}
UNKNOWN_ENTRY = "unknown"
DEFAULT_STALL_SECONDS = 120.0
DEFAULT_HISTORY = 10


class StageEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    stage: Stage
    at: float  # wall-clock time (seconds since the epoch)
    offset: float  # seconds since the boot started
    detail: str = ""  # the file, the address, the report
    bytes: int | None = None
    seconds: float | None = None  # how long the transfer took (TFTP: until the client's next TFTP
    # request; unknown for its last one)


class BootView(BaseModel):
    started: float
    state: HostState
    stage: Stage
    since: float  # when the stage was reached
    entry: str | None
    config: str | None  # "per-host" or "default"
    architecture: str | None = None  # the client's, from the loader files it asked for
    error: str | None = None  # the last failure (a file not found, an HTTP error)
    duration: float | None = None  # start to `up`
    reported_uptime: float | None = None  # the system's own boot time, from its report
    stages: dict[str, float]  # stage -> seconds from the boot's start to reaching it
    events: list[StageEvent]


class HostView(BaseModel):
    mac: str
    name: str | None  # from the spec; None: an unknown MAC
    ip: str | None
    known: bool
    entry: str | None
    state: HostState
    stage: Stage
    since: float
    last_boot_seconds: float | None  # the last completed boot's duration
    error: str | None
    boots: list[BootView]  # oldest first, the current one last


class BundleInfo(BaseModel):
    name: str
    version: str
    digest: str


class StatusReport(BaseModel):
    """What /bootpack/api/status answers and `bootpack status` reads."""

    bundle: BundleInfo
    address: str
    mode: str
    now: float
    stall_seconds: float
    hosts: list[HostView]


@dataclass
class _Boot:
    started: float
    entry: str | None = None
    entry_sure: bool = False
    architecture: Architecture | None = None  # the client's, once a boot file has told
    config: str | None = None
    stage: Stage = "dhcp-discover"
    since: float = 0.0
    error: str | None = None
    duration: float | None = None
    reported_uptime: float | None = None
    stalled: bool = False
    reached: dict[Stage, float] = field(default_factory=dict)
    events: list[StageEvent] = field(default_factory=list)

    def state(self) -> HostState:
        return "up" if self.stage == "up" else "stalled" if self.stalled else "booting"


@dataclass
class _Host:
    mac: str
    boots: deque[_Boot]
    ip: str | None = None
    last_boot_seconds: float | None = None
    last_discover: float | None = None  # when this MAC last sent a DHCPDISCOVER


class Listener:
    """What the store tells the metrics (all no-ops here)."""

    def dhcp(self, event: DhcpEvent) -> None: ...
    def file(self, event: FileEvent, size: int | None) -> None: ...
    def file_error(self, protocol: str, kind: FileKind) -> None: ...
    def nfs_mount(self, event: NfsMount) -> None: ...
    def boot_started(self, entry: str) -> None: ...
    def boot_completed(self, entry: str, seconds: float) -> None: ...
    def boot_stalled(self, entry: str) -> None: ...


class Timeline:
    """The store. `feed` takes events (any thread); `report_up` takes a system's report;
    `view` is the status report. `file_size(path)` gives the size of a TFTP-served file (None:
    missing), since tftpd logs only the request."""

    MAX_EVENTS = 200  # per boot: a client looping on a missing file cannot grow without bound
    MAX_UNMAPPED = 256  # client IPs whose MAC is not known yet

    def __init__(self, spec: Spec, *, own_address: str | None = None,
                 stall_seconds: float = DEFAULT_STALL_SECONDS, history: int = DEFAULT_HISTORY,
                 file_size: Callable[[str], int | None] = lambda path: None,
                 listener: Listener | None = None, clock: Callable[[], float] = time.time,
                 max_hosts: int = 4096) -> None:
        self.spec = spec
        self.own = own_address
        self.stall_seconds = stall_seconds
        self.history = history
        self.file_size = file_size
        self.listener = listener or Listener()
        self.clock = clock
        self.max_hosts = max_hosts
        self.lock = threading.Lock()
        self.hosts: dict[str, _Host] = {}
        self.ip_mac: dict[str, str] = {}
        self.names = {h.mac.lower(): h for h in spec.hosts}
        for host in spec.hosts:
            if host.ip is not None:
                self.ip_mac[str(host.ip)] = host.mac.lower()
        self.pending_tftp: dict[str, tuple[str, StageEvent]] = {}  # client IP -> (mac, last RRQ)
        # client IP -> files it read before its MAC was known (event, time, size, ok)
        self.unmapped: dict[str, list[tuple[FileEvent, float, int | None, bool]]] = {}

    # -- input ----------------------------------------------------------------------------------
    def feed(self, event: BootEvent) -> None:
        with self.lock:
            now = self.clock()
            self._tick(now)
            if isinstance(event, DhcpEvent):
                self._dhcp(event, now)
            elif isinstance(event, FileEvent):
                self._file(event, now)
            elif isinstance(event, TftpError):
                self._tftp_error(event)
            elif isinstance(event, NfsMount):
                self._nfs(event, now)

    def report_up(self, client: str, *, mac: str | None = None, entry: str | None = None,
                  uptime: float | None = None) -> bool:
        """A booted system says it is up. False when neither its MAC nor its IP is known."""
        with self.lock:
            now = self.clock()
            self._tick(now)
            mac = (mac or "").lower() or self.ip_mac.get(client)
            if not mac:
                return False
            host = self._host(mac)
            if host is None:
                return False
            host.ip = client
            self.ip_mac[client] = mac
            boot = host.boots[-1] if host.boots else None
            if boot is None or boot.stage == "up":
                boot = self._new_boot(host, now)
                self.listener.boot_started(boot.entry or UNKNOWN_ENTRY)
            if entry and (entry in self._entry_names()):
                boot.entry, boot.entry_sure = entry, True
            boot.reported_uptime = uptime
            detail = f"reported by {client}" + (f", system up {uptime:.1f} s" if uptime is not None else "")
            self._advance(boot, "up", now, detail)
            boot.duration = now - boot.started
            boot.stalled = False
            host.last_boot_seconds = boot.duration
            self.listener.boot_completed(boot.entry or UNKNOWN_ENTRY, boot.duration)
            return True

    # -- output ---------------------------------------------------------------------------------
    def view(self) -> list[HostView]:
        with self.lock:
            now = self.clock()
            self._tick(now)
            return [self._host_view(h) for h in self.hosts.values() if h.boots]

    def entry_of_mac(self, mac: str) -> str | None:
        host = self.names.get(mac)
        if host is None:
            return None
        return self._entry(host, None)

    # -- internals ------------------------------------------------------------------------------
    def _entry_names(self) -> set[str]:
        return {e.name for e in self.spec.entries}

    def _entry(self, known: Host | None, architecture: Architecture | None) -> str:
        """What a client boots unless someone picks from the menu, by the renderers' rules: a
        known host its host file's entry (Spec.host_entry), any other client its architecture's
        menu default (Spec.architecture_default); menu.default while the architecture is not
        known yet."""
        if known is not None:
            return self.spec.host_entry(known).name
        fits = self.spec.architecture_default(architecture) if architecture is not None else None
        return (fits or self.spec.default_entry).name

    def _host(self, mac: str) -> _Host | None:
        host = self.hosts.get(mac)
        if host is None:
            if len(self.hosts) >= self.max_hosts:
                return None  # a flood of made-up MACs cannot exhaust memory
            host = self.hosts[mac] = _Host(mac=mac, boots=deque(maxlen=self.history))
        return host

    def _new_boot(self, host: _Host, now: float) -> _Boot:
        known = self.names.get(host.mac)
        # A known host boots its entry; any other client gets the menu, whose default boots on
        # timeout (the kernel fetched or the system's report corrects a choice made by hand).
        boot = _Boot(started=now, since=now, entry=self._entry(known, None))
        host.boots.append(boot)
        return boot

    def _advance(self, boot: _Boot, stage: Stage, now: float, detail: str = "",
                 size: int | None = None, seconds: float | None = None) -> None:
        if len(boot.events) < self.MAX_EVENTS:
            boot.events.append(StageEvent(stage=stage, at=now, offset=round(now - boot.started, 3),
                                          detail=detail, bytes=size, seconds=seconds))
        if RANK[stage] > RANK[boot.stage] or not boot.reached:
            boot.stage, boot.since = stage, now
            boot.stalled = False
        boot.reached.setdefault(stage, round(now - boot.started, 3))

    def _tick(self, now: float) -> None:
        for host in self.hosts.values():
            boot = host.boots[-1] if host.boots else None
            if boot is not None and boot.stage != "up" and not boot.stalled \
                    and now - boot.since > self.stall_seconds:
                boot.stalled = True
                self.listener.boot_stalled(boot.entry or UNKNOWN_ENTRY)

    def _dhcp(self, event: DhcpEvent, now: float) -> None:
        self.listener.dhcp(event)
        if event.ip and event.message in ("offer", "ack", "pxe"):
            self.ip_mac[event.ip] = event.mac
            self.unmapped.pop(event.ip, None)
        if event.message == "pxe":
            stage: Stage = "dhcp-ack" if event.bootfile else "dhcp-offer"
        elif event.message == "discover":
            stage = "dhcp-discover"
        elif event.message == "offer":
            stage = "dhcp-offer"
        elif event.message == "ack":
            stage = "dhcp-ack"
        else:
            return
        host = self._host(event.mac)
        if host is None:
            return
        if event.ip and event.message in ("ack", "pxe"):
            host.ip = event.ip
        boot = host.boots[-1] if host.boots else None
        starts = event.message == "discover" or (event.message == "pxe" and not event.bootfile)
        if starts:
            host.last_discover = now
        # After the kernel a DISCOVER may be the system's own or a reboot: the loader being
        # fetched again tells (see _file). Before it, a DISCOVER after the loader is a reboot.
        if boot is None or (starts and (boot.stage == "up" or (RANK[boot.stage] < RANK["kernel"] and (
                boot.stalled or RANK[boot.stage] >= RANK["loader"])))):
            boot = self._new_boot(host, now)
            self.listener.boot_started(boot.entry or UNKNOWN_ENTRY)
        detail = f"{event.mode} {event.message}" + (f" {event.ip}" if event.ip else "")
        if RANK[boot.stage] >= RANK["kernel"]:
            detail += " (the booted system's own DHCP)"
        if starts and event.message == "pxe":
            # dnsmasq logs a proxy's answer, not the DISCOVER it answers: that one line is both.
            self._advance(boot, "dhcp-discover", now, detail)
        self._advance(boot, stage, now, detail)

    def _file(self, event: FileEvent, now: float) -> None:
        if event.client == self.own or event.method not in ("GET", "HEAD"):
            return  # the appliance's own health probes
        if event.kind == "other":
            return  # the status site's own pages, favicons, anything not a boot file
        size = event.bytes if event.protocol == "http" else self.file_size(event.path)
        ok = event.ok if event.protocol == "http" else size is not None
        if ok:
            self.listener.file(event, size)
        elif event.kind != "config":  # pxelinux probes several config names: misses are normal
            self.listener.file_error(event.protocol, event.kind)
        mac = self.ip_mac.get(event.client)
        if mac is None and event.protocol == "tftp":
            # pxelinux always asks for pxelinux.cfg/01-MAC first: in proxy mode, where another
            # server hands out the addresses, that is where an IP gets its MAC; the loader read
            # before it waits here until then.
            mac = config_mac(event.path)
            if mac is None:
                waiting = self.unmapped.setdefault(event.client, []) \
                    if len(self.unmapped) < self.MAX_UNMAPPED or event.client in self.unmapped else []
                if len(waiting) < 16:
                    waiting.append((event, now, size, ok))
                return
            self.ip_mac[event.client] = mac
            for earlier in self.unmapped.pop(event.client, []):
                self._track(mac, *earlier)
        if mac is not None:
            self._track(mac, event, now, size, ok)

    def _track(self, mac: str, event: FileEvent, now: float, size: int | None, ok: bool) -> None:
        """A boot file the client with this MAC read (or failed to)."""
        if event.protocol == "tftp":
            self._close_tftp(event.client, now)
        host = self._host(mac)
        if host is None:
            return
        boot = host.boots[-1] if host.boots else None
        if boot is None or boot.stage == "up":
            boot = self._new_boot(host, now)
            self.listener.boot_started(boot.entry or UNKNOWN_ENTRY)
        elif event.kind == "loader" and RANK[boot.stage] >= RANK["kernel"]:
            boot = self._reboot(host, boot, now)
        architecture = architecture_of(event.path)  # asked for, even if missing (GRUB's *.lst)
        if architecture is not None and boot.architecture is None:
            # e.g. an arm64 loader: the arm64 menu, whose default may not be menu.default
            boot.architecture = architecture
            if not boot.entry_sure:
                boot.entry = self._entry(self.names.get(mac), architecture)
        stage = FILE_STAGES[event.kind]
        if not ok:
            if event.kind != "config":
                why = f"HTTP {event.status}" if event.protocol == "http" else "not found"
                boot.error = f"{event.kind} {event.path}: {why} ({event.protocol.upper()})"
            return
        if event.kind == "config":
            per_host = config_mac(event.path)
            boot.config = "per-host" if per_host else "default"
        if event.kind in ("kernel", "initrd", "root") and not boot.entry_sure:
            image = image_of(event.path)
            candidates = [e.name for e in self.spec.entries if e.image == image]
            if candidates and boot.entry not in candidates:
                boot.entry = candidates[0]
        self._advance(boot, stage, now, f"{event.protocol} {event.path}", size, event.seconds)
        if event.protocol == "tftp" and boot.events:
            self.pending_tftp[event.client] = (mac, boot.events[-1])
        if boot.error and stage in ("kernel", "initrd", "root") and event.kind in boot.error:
            boot.error = None  # fetched after all

    def _nfs(self, event: NfsMount, now: float) -> None:
        """An NFS root mount starting: the `root` stage of the client's current boot. Once the
        boot is up (or has its root), further sessions are the running system's own (a
        reconnect, a lease renewed after a server restart) and start nothing."""
        if event.client == self.own:
            return  # the health check's nfs-ls
        self.listener.nfs_mount(event)
        mac = self.ip_mac.get(event.client)
        host = self.hosts.get(mac) if mac else None
        if host is None or not host.boots:
            return
        boot = host.boots[-1]
        if boot.stage == "up" or "root" in boot.reached:
            return
        self._advance(boot, "root", now, f"nfs v{event.version} mount by {event.client} ({event.how})")

    def _reboot(self, host: _Host, old: _Boot, now: float) -> _Boot:
        """The loader again after the kernel: the machine restarted. The new boot began with
        its last DHCPDISCOVER; the DHCP events since then move to it."""
        start = host.last_discover if host.last_discover is not None and \
            host.last_discover >= old.since else now
        moved = [e for e in old.events if e.at >= start and e.stage.startswith("dhcp-")]
        old.events = [e for e in old.events if not (e.at >= start and e.stage.startswith("dhcp-"))]
        boot = self._new_boot(host, start)
        self.listener.boot_started(boot.entry or UNKNOWN_ENTRY)
        for event in moved:
            self._advance(boot, event.stage, event.at, event.detail.replace(
                " (the booted system's own DHCP)", ""))
        return boot

    def _close_tftp(self, client: str, now: float) -> None:
        """The client's previous TFTP read ends at its next TFTP request (pxelinux reads one
        file after the other): note how long it took."""
        pending = self.pending_tftp.pop(client, None)
        if pending is None:
            return
        mac, event = pending
        host = self.hosts.get(mac)
        if host is None or not host.boots:
            return
        boot = host.boots[-1]
        for i in range(len(boot.events) - 1, -1, -1):
            if boot.events[i] is event:
                boot.events[i] = event.model_copy(update={"seconds": round(now - event.at, 3)})
                break

    def _tftp_error(self, event: TftpError) -> None:
        pending = self.pending_tftp.get(event.client)
        if pending is None:
            return
        mac, last = pending
        host = self.hosts.get(mac)
        if host is None or not host.boots or last.stage == "config":
            return
        host.boots[-1].error = f"{last.detail}: TFTP error {event.code} ({event.text})"

    def _boot_view(self, boot: _Boot) -> BootView:
        return BootView(started=boot.started, state=boot.state(), stage=boot.stage, since=boot.since,
                        entry=boot.entry, config=boot.config, architecture=boot.architecture,
                        error=boot.error,
                        duration=boot.duration, reported_uptime=boot.reported_uptime,
                        stages={str(k): v for k, v in boot.reached.items()},
                        events=list(boot.events))

    def _host_view(self, host: _Host) -> HostView:
        current = host.boots[-1]
        known = self.names.get(host.mac)
        return HostView(mac=host.mac, name=known.name if known else None, ip=host.ip,
                        known=known is not None, entry=current.entry, state=current.state(),
                        stage=current.stage, since=current.since,
                        last_boot_seconds=host.last_boot_seconds, error=current.error,
                        boots=[self._boot_view(b) for b in host.boots])
