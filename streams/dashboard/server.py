"""The dashboard's HTTP server: static page, JSON for the initial state, SSE for the rest.

The standard library's threading HTTP server is enough here: a handful of local browsers,
one thread each, and the only long-lived requests are the server-sent event streams,
which wait on a queue with a timeout so that :meth:`DashboardServer.stop` ends them within
a second. Every asset is served from installed package files (the page from this package,
plotly.min.js from the plotly wheel), so the page works offline and no third-party
JavaScript lives in this repository.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis

from infra.cluster import connect
from streams.dashboard.live import LiveFeed, sse_frame
from streams.dashboard.queries import DashboardReader, parse_series
from streams.dashboard.state import calendar_marks
from streams.errors import InfraError, RetailPulseError
from streams.settings import Settings

__all__ = ["DashboardServer", "serve"]

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
_STATIC = {  # file name -> content type; nothing else under static/ is served
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_KEEPALIVE_S = 15.0  # an SSE comment this often: proxies keep the stream, dead peers show


def _plotly_js() -> bytes:
    """plotly.min.js as the plotly wheel ships it (package data, no network)."""
    try:
        return (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise InfraError(f"plotly's bundled JavaScript is not installed: {exc}") from exc


class DashboardServer:
    """A bound (not yet serving) dashboard; :meth:`start` serves it in background threads."""

    def __init__(
        self,
        settings: Settings,
        host: str = "127.0.0.1",
        port: int = 8050,
        *,
        tick_s: float = 1.0,
        with_lag: bool = True,
    ) -> None:
        self.settings = settings
        self.client = connect(
            settings.redis.require_url(),
            socket_timeout=5,
            socket_connect_timeout=3,
            health_check_interval=30,
        )
        self.reader = DashboardReader(self.client, settings.redis.key_prefix)
        kafka = settings.kafka if with_lag and settings.kafka.bootstrap_servers else None
        self.feed = LiveFeed(self.reader, kafka=kafka, tick_s=tick_s)
        try:
            self.httpd = ThreadingHTTPServer((host, port), _Handler)
        except OSError as exc:
            self.client.close()
            raise InfraError(f"dashboard: cannot listen on {host}:{port}: {exc}") from exc
        self.httpd.daemon_threads = True  # SSE handlers must not hold the process open
        self.httpd.dashboard = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None
        self._assets: dict[str, bytes] = {}
        self._assets_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> DashboardServer:
        try:
            self.feed.start()
        except (redis.RedisError, RetailPulseError) as exc:
            self.httpd.server_close()
            self.client.close()
            raise InfraError(f"dashboard: cannot subscribe to Redis: {exc}") from exc
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.25},
            name="dashboard-http", daemon=True,
        )  # fmt: skip
        self._thread.start()
        log.info("dashboard on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, end every SSE stream, close the subscription and the socket."""
        self.feed.stop()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()
        self.client.close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def asset(self, name: str) -> bytes:
        """Static bytes, read once (the pages are small; plotly.min.js is ~5 MB)."""
        with self._assets_lock:
            if name not in self._assets:
                if name == "plotly.min.js":
                    self._assets[name] = _plotly_js()
                else:
                    static = resources.files("streams.dashboard") / "static" / name
                    self._assets[name] = static.read_bytes()
            return self._assets[name]

    # -- JSON views -----------------------------------------------------------------------

    def series(self, level: str, node: str) -> dict[str, Any]:
        series = f"{level}:{node}"
        fc = self.reader.forecast(level, node)
        stored = self.reader.stored_history(level, node) if fc is not None else []
        with self.feed.lock:
            self.feed.history.merge(series, stored)
            if fc is not None:
                self.feed.history.record(series, fc)
            points = self.feed.history.points(series)
        start = points[0]["as_of"] if points else (fc["as_of"] if fc else -1)
        horizon = len(fc["mean"]) if fc else 0
        end = max((fc["as_of"] if fc else start), start) + (horizon + 1) * DAY_MS
        marks = calendar_marks(start, end, self.settings.demand.country) if start >= 0 else []
        return {"series": series, "forecast": fc, "points": points, "calendar": marks}

    def alerts(self) -> dict[str, Any]:
        with self.feed.lock:
            rows = self.feed.alerts.rows()
            reorders = list(self.feed.recent["reorder"])
        return {
            "alerts": rows,
            "open": sum(1 for r in rows if r["state"] == "open"),
            "closed": sum(1 for r in rows if r["state"] == "closed"),
            "reorders": reorders,
        }

    def churn(self) -> dict[str, Any]:
        top = self.reader.churn_top()
        with self.feed.lock:
            recent = list(self.feed.recent["churn"])
        return {"top": top, "recent_alerts": recent}

    def health(self) -> dict[str, Any]:
        return self.feed.health or self.feed.refresh_health()


class _Handler(BaseHTTPRequestHandler):
    server_version = "retailpulse-dashboard"

    @property
    def dash(self) -> DashboardServer:
        return self.server.dashboard  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        try:
            if path in ("/", "/index.html"):
                self._bytes(self.dash.asset("index.html"), _STATIC["index.html"])
            elif path.startswith("/static/") and path[8:] in _STATIC:
                self._bytes(self.dash.asset(path[8:]), _STATIC[path[8:]])
            elif path == "/assets/plotly.min.js":
                self._bytes(self.dash.asset("plotly.min.js"), _STATIC["app.js"], cache=True)
            elif path == "/events":
                self._events(query.get("series") or None)
            elif path.startswith("/api/"):
                self._json(self._api(path[5:], query))
            else:
                self._json({"error": f"no such page: {path}"}, HTTPStatus.NOT_FOUND)
        except ValueError as exc:
            self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
        except RetailPulseError as exc:
            log.warning("%s", exc)
            self._json({"error": str(exc)}, HTTPStatus.SERVICE_UNAVAILABLE)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away mid-answer

    def _api(self, name: str, query: dict[str, str]) -> Any:
        dash = self.dash
        if name == "health":
            return dash.health()
        if name == "series/list":
            return dash.reader.series_list()
        if name == "series":
            level, node = parse_series(f"{query.get('level', 'total')}:{query.get('node', 'all')}")
            return dash.series(level, node)
        if name == "churn/top":
            return dash.churn()
        if name == "alerts":
            return dash.alerts()
        if name == "scores":
            return dash.reader.scores()
        raise ValueError(f"no such API: /api/{name}")

    def _bytes(self, body: bytes, content_type: str, *, cache: bool = False) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=86400" if cache else "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(data, allow_nan=False, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _events(self, series: str | None) -> None:
        if series is not None:
            parse_series(series)  # ValueError -> 400 before the stream starts
        hub = self.dash.feed.hub
        sub = hub.register(series)
        if sub is None:
            self._json({"error": "too many dashboard clients"}, HTTPStatus.SERVICE_UNAVAILABLE)
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(b"retry: 2000\n\n" + sse_frame("hello", self.dash.health()))
            self.wfile.flush()
            idle = 0.0
            while not hub.closed and not sub.dropped:
                try:
                    frames = [sub.frames.get(timeout=1.0)]
                except queue.Empty:
                    idle += 1.0
                    if idle >= _KEEPALIVE_S:
                        self.wfile.write(b": keepalive\n\n")
                        self.wfile.flush()
                        idle = 0.0
                    continue
                while len(frames) < 256:  # a burst goes out in one write
                    try:
                        frames.append(sub.frames.get_nowait())
                    except queue.Empty:
                        break
                self.wfile.write(b"".join(frames))
                self.wfile.flush()
                idle = 0.0
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the browser closed the page or switched series
        finally:
            hub.unregister(sub)


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8050,
    *,
    tick_s: float = 1.0,
    with_lag: bool = True,
) -> DashboardServer:
    """A dashboard bound to ``host:port`` (0: a free port; see ``.url``); call ``.start()``."""
    return DashboardServer(settings, host, port, tick_s=tick_s, with_lag=with_lag)
