"""`bootpack status`: read a running appliance's status API and show it as a table or as JSON."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

from ..errors import BootpackError
from .statusweb import PREFIX
from .timeline import STAGES, HostView, StatusReport

SHORT = {"dhcp-discover": "disc", "dhcp-offer": "offer", "dhcp-ack": "ack", "loader": "nbp",
         "config": "cfg", "kernel": "kernel", "initrd": "initrd", "root": "root", "up": "up"}


def status_url(server: str) -> str:
    """The API URL for --server: a base URL (http://10.0.0.2), a host, or the full API URL."""
    server = server.rstrip("/")
    if "://" not in server:
        server = f"http://{server}"
    if server.endswith("/api/status"):
        return server
    if server.endswith(PREFIX):
        return f"{server}/api/status"
    return f"{server}{PREFIX}/api/status"


def fetch(url: str, token: str | None = None, timeout: float = 5.0) -> StatusReport:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return StatusReport.model_validate_json(answer.read())
    except urllib.error.HTTPError as exc:
        hint = " (give --token or $BOOTPACK_STATUS_TOKEN)" if exc.code == 401 else ""
        raise BootpackError(f"{url}: HTTP {exc.code}{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise BootpackError(f"{url}: cannot reach the appliance ({exc})") from None
    except ValueError as exc:
        raise BootpackError(f"{url}: not a bootpack status answer ({exc})") from None


def stage_times(host: HostView, now: float) -> str:
    """Seconds spent in each stage of the current boot: from reaching it to reaching the next
    (the last one: until now, unless it is `up`)."""
    boot = host.boots[-1]
    reached = [(s, boot.stages[s]) for s in STAGES if s in boot.stages]
    parts = []
    for i, (stage, at) in enumerate(reached):
        if stage == "up":
            break
        end = reached[i + 1][1] if i + 1 < len(reached) else now - boot.started
        parts.append(f"{SHORT[stage]} {end - at:.1f}")
    return " ".join(parts)


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def table(report: StatusReport) -> str:
    b = report.bundle
    head = (f"{b.name} {b.version} ({b.digest[:19]}) on {report.address}, DHCP {report.mode}; "
            f"stalled after {report.stall_seconds:.0f} s")
    columns = ["HOST", "MAC", "IP", "ENTRY", "STAGE", "WHEN", "TIME PER STAGE (s)", "LAST BOOT",
               "STATE"]
    rows = []
    for h in sorted(report.hosts, key=lambda h: (not h.known, h.name or "", h.mac)):
        state = h.state if h.state != "stalled" else f"stalled at {h.stage}"
        if h.error:
            state += f": {h.error}"
        rows.append([h.name or "(unknown)", h.mac, h.ip or "-", h.entry or "-", h.stage,
                     _ago(report.now - h.since), stage_times(h, report.now) or "-",
                     f"{h.last_boot_seconds:.1f}s" if h.last_boot_seconds is not None else "-",
                     state])
    if not rows:
        return head + "\nno client has tried to boot yet\n"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [columns, *rows]]
    return head + "\n" + "\n".join(lines) + "\n"


def render(report: StatusReport, as_json: bool) -> str:
    if as_json:
        return json.dumps(report.model_dump(mode="json"), indent=2) + "\n"
    return table(report)


def watch(url: str, token: str | None, as_json: bool, interval: float = 2.0) -> None:
    """Redraw until interrupted (a JSON document per poll with --json). The first poll must
    succeed (a wrong URL or token is an error, exit 2); later, an appliance that does not answer
    (restarting, its nginx down) is shown and polled again rather than ending the watch."""
    text = render(fetch(url, token), as_json)
    while True:
        if as_json:
            print(text, end="", flush=True)
        else:
            print("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + text, end="", flush=True)
        time.sleep(interval)
        try:
            text = render(fetch(url, token), as_json)
        except BootpackError as exc:
            if as_json:  # stdout stays a stream of reports; the error goes to stderr
                print(f"bootpack: {exc}; retrying", file=sys.stderr, flush=True)
                text = ""
            else:
                text = f"{exc}; retrying every {interval:g} s\n"
