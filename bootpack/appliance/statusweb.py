"""The appliance's read-only status site: a stdlib HTTP server on loopback, behind nginx.

nginx (listening on the serving address only) proxies these to it:

  GET /bootpack/              the dashboard (one static page polling the API; no build step)
  GET /bootpack/api/status    the StatusReport as JSON
  GET /metrics                Prometheus text format
  GET|POST /bootpack/up/ENTRY?uptime=SECONDS[&mac=MAC]
                              a booted system reports itself (the client is nginx's X-Real-IP)

With an access token (`--status-token` / BOOTPACK_STATUS_TOKEN) the first three need it, as
`Authorization: Bearer TOKEN` or `?token=TOKEN`; the `up` report never does (a booting system
has no secret) and only ever marks its own address's host as up. Nothing here changes what
the appliance serves.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from .metrics import Metrics
from .state import DEFAULT_STATUS_PORT
from .timeline import BundleInfo, StatusReport, Timeline

PREFIX = "/bootpack"


def dashboard_html() -> bytes:
    return resources.files(__package__).joinpath("dashboard.html").read_bytes()


class StatusSite:
    def __init__(self, timeline: Timeline, metrics: Metrics, bundle: BundleInfo, *, address: str,
                 mode: str, token: str | None = None,
                 log: Callable[[str], None] = lambda text: None) -> None:
        self.timeline, self.metrics, self.bundle = timeline, metrics, bundle
        self.address, self.mode, self.token, self.log = address, mode, token, log
        self.page = dashboard_html()
        self.server: ThreadingHTTPServer | None = None

    def report(self) -> StatusReport:
        return StatusReport(bundle=self.bundle, address=self.address, mode=self.mode,
                            now=self.timeline.clock(), stall_seconds=self.timeline.stall_seconds,
                            hosts=self.timeline.view())

    def allowed(self, headers: dict[str, str], query: dict[str, list[str]]) -> bool:
        if not self.token:
            return True
        given = headers.get("authorization", "").removeprefix("Bearer ").strip() \
            or (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def handle(self, method: str, target: str, headers: dict[str, str],
               peer: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a request: the routing, without sockets."""
        url = urlsplit(target)
        query = parse_qs(url.query)
        path = url.path
        if path.startswith(f"{PREFIX}/up/") or path == f"{PREFIX}/up":
            if method not in ("GET", "POST"):
                return 405, "text/plain", b"GET or POST\n"
            client = headers.get("x-real-ip") if peer == "127.0.0.1" else None
            entry = path.removeprefix(f"{PREFIX}/up").strip("/") or None
            try:
                uptime = float(query["uptime"][0]) if "uptime" in query else None
            except ValueError:
                uptime = None
            mac = (query.get("mac") or [""])[0] or None
            ok = self.timeline.report_up(client or peer, mac=mac, entry=entry, uptime=uptime)
            self.log(f"up report from {client or peer} entry {entry} uptime {uptime}: "
                     f"{'recorded' if ok else 'unknown client'}")
            return (200, "text/plain", b"ok\n") if ok else (404, "text/plain", b"unknown client\n")
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"read-only\n"
        if path not in (f"{PREFIX}/", f"{PREFIX}/api/status", "/metrics"):
            return 404, "text/plain", b"not found\n"
        if not self.allowed(headers, query):
            return 401, "text/plain", b"token required\n"
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.exposition()
        if path == f"{PREFIX}/api/status":
            return 200, "application/json", self.report().model_dump_json().encode()
        return 200, "text/html; charset=utf-8", self.page

    def start(self, port: int = DEFAULT_STATUS_PORT, host: str = "127.0.0.1") -> int:
        """Serve in a daemon thread; returns the port (0 picks a free one)."""
        site = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "bootpack"
            sys_version = ""

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(min(length, 65536))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, kind, body = site.handle(self.command, self.path, headers,
                                                 self.client_address[0])
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass  # nginx logs every request already

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return int(self.server.server_address[1])

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
