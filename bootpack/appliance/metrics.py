"""Prometheus metrics of a running appliance, on its own prometheus-client registry.

Names carry their unit and counters end in `_total`; labels are bounded sets (DHCP message
types and modes, protocols, file kinds, entry names plus "unknown", service and check names),
never MACs or addresses: the per-host view is /bootpack/api/status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .bootlog import DhcpEvent, FileEvent, FileKind, NfsMount
from .health import HEALTH_FILE
from .state import DaemonState
from .timeline import UNKNOWN_ENTRY, HostView, Listener

DURATION_BUCKETS = (5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600)


class _Live(Collector):
    """Values read at scrape time: daemons (supervisor), health results, hosts by state."""

    def __init__(self, daemons: Callable[[], dict[str, DaemonState]], runtime: Path | None,
                 hosts: Callable[[], list[HostView]]) -> None:
        self.daemons, self.runtime, self.hosts = daemons, runtime, hosts

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        restarts = CounterMetricFamily("bootpack_daemon_restarts", "Restarts of each supervised "
                                       "daemon since the appliance started.", labels=["service"])
        up = GaugeMetricFamily("bootpack_daemon_up", "1 when the daemon runs, else 0.",
                               labels=["service"])
        for name, daemon in sorted(self.daemons().items()):
            restarts.add_metric([name], daemon.restarts)
            up.add_metric([name], 1.0 if daemon.state == "running" else 0.0)
        yield restarts
        yield up
        if self.runtime is not None:
            health = GaugeMetricFamily("bootpack_health_check_ok", "Result of the last `bootpack "
                                       "health` run per check: 1 passed, 0 failed.", labels=["check"])
            checked = GaugeMetricFamily("bootpack_health_check_timestamp_seconds",
                                        "When `bootpack health` last ran.")
            try:
                data = json.loads((self.runtime / HEALTH_FILE).read_text())
                for name, ok in sorted(data.get("checks", {}).items()):
                    health.add_metric([name], 1.0 if ok else 0.0)
                checked.add_metric([], float(data.get("time", 0)))
            except (OSError, ValueError):
                pass
            yield health
            yield checked
        hosts = GaugeMetricFamily("bootpack_hosts", "Hosts seen, by the state of their last boot.",
                                  labels=["state"])
        counts = {"booting": 0, "up": 0, "stalled": 0}
        for host in self.hosts():
            counts[host.state] += 1
        for state, count in counts.items():
            hosts.add_metric([state], count)
        yield hosts


class Metrics(Listener):
    """The counters the timeline drives, and the registry /metrics exposes."""

    def __init__(self, entries: list[str]) -> None:
        self.entries = set(entries)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.dhcp_messages = Counter("bootpack_dhcp_messages", "DHCP messages seen, by type and "
                                     "mode (server: dhcpd; proxy: dnsmasq).", ["type", "mode"],
                                     registry=r)
        self.files = Counter("bootpack_files_served", "Files served to clients, by protocol and "
                             "kind (protocol nfs, kind root: NFS root mounts started).",
                             ["protocol", "kind"], registry=r)
        self.file_bytes = Counter("bootpack_files_served_bytes", "Bytes of files served to clients "
                                  "(TFTP: the file's size).", ["protocol", "kind"], registry=r)
        self.file_errors = Counter("bootpack_file_errors", "Requests for boot files that failed "
                                   "(not found, HTTP errors).", ["protocol", "kind"], registry=r)
        self.started = Counter("bootpack_boots_started", "Boots started, by entry.", ["entry"],
                               registry=r)
        self.completed = Counter("bootpack_boots_completed", "Boots that reached `up`, by entry.",
                                 ["entry"], registry=r)
        self.stalled = Counter("bootpack_boots_stalled", "Boots that stopped advancing for longer "
                               "than the stall threshold, by entry.", ["entry"], registry=r)
        self.duration = Histogram("bootpack_boot_duration_seconds", "From the first DHCP message "
                                  "to the `up` report, by entry.", ["entry"],
                                  buckets=DURATION_BUCKETS, registry=r)
        for entry in [*sorted(self.entries), UNKNOWN_ENTRY]:  # every series exists from the start
            self.started.labels(entry)
            self.completed.labels(entry)
            self.stalled.labels(entry)
            self.duration.labels(entry)

    def watch(self, daemons: Callable[[], dict[str, DaemonState]], runtime: Path | None,
              hosts: Callable[[], list[HostView]]) -> None:
        self.registry.register(_Live(daemons, runtime, hosts))

    def _entry(self, entry: str) -> str:
        return entry if entry in self.entries else UNKNOWN_ENTRY

    def dhcp(self, event: DhcpEvent) -> None:
        self.dhcp_messages.labels(event.message, event.mode).inc()

    def file(self, event: FileEvent, size: int | None) -> None:
        self.files.labels(event.protocol, event.kind).inc()
        if size:
            self.file_bytes.labels(event.protocol, event.kind).inc(size)

    def nfs_mount(self, event: NfsMount) -> None:
        self.files.labels("nfs", "root").inc()

    def file_error(self, protocol: str, kind: FileKind) -> None:
        self.file_errors.labels(protocol, kind).inc()

    def boot_started(self, entry: str) -> None:
        self.started.labels(self._entry(entry)).inc()

    def boot_completed(self, entry: str, seconds: float) -> None:
        self.completed.labels(self._entry(entry)).inc()
        self.duration.labels(self._entry(entry)).observe(seconds)

    def boot_stalled(self, entry: str) -> None:
        self.stalled.labels(self._entry(entry)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
