"""The ``dashboard`` subcommand: serve the live page until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
import webbrowser
from typing import Any

from streams.settings import Settings

__all__ = ["add_dashboard_parser"]


def add_dashboard_parser(sub: Any) -> None:
    dash = sub.add_parser(
        "dashboard", help="live web page over Redis (read-only; SSE, works offline)"
    )
    dash.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    dash.add_argument("--port", type=int, default=8050, help="0: any free port")
    dash.add_argument(
        "--open-browser", action="store_true", help="open the page in the default browser"
    )
    dash.add_argument("--no-lag", action="store_true", help="do not ask Kafka for consumer lag")
    dash.set_defaults(func=_dashboard)


def _dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from streams.dashboard.server import serve

    server = serve(settings, args.host, args.port, with_lag=not args.no_lag).start()
    stopping = threading.Event()
    # SIGTERM (a supervisor, `kill`) stops like Ctrl-C: both end in server.stop() below.
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print(f"dashboard: {server.url}  (Ctrl-C stops)", flush=True)
    if args.open_browser:
        webbrowser.open(server.url)
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        print("dashboard stopped", flush=True)
    return 0
