"""``retailpulse demo``: the whole product on the embedded servers, in one command.

1. starts Tansu (Kafka-compatible, memory storage: dev and demos only) and Valkey as child
   processes on free 127.0.0.1 ports, and creates the topics;
2. starts every flow live (``retailpulse run --live``) and the dashboard, each as a child
   process, so results appear while history is still being loaded;
3. backfills about a year of simulated history with a progress bar, plus a few malformed
   records so the dead-letter path shows;
4. streams live days at an accelerated pace: the default dates put Black Friday, Cyber Monday
   and Christmas in the live window, with a supplier disruption, new SKUs and churners;
5. prints when the first forecasts, churn risks and supply alert land in Redis, and keeps
   everything running until Ctrl-C, which stops every process it started.

``--exit-when-done`` instead waits for the flows to catch up with the last live day, prints
the model reports and exits (scripts, tests, measurements).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import webbrowser
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from streams.settings import Settings

__all__ = ["add_demo_parser", "default_start_date"]

POISON: tuple[tuple[str, bytes], ...] = (
    ("orders", b"not avro at all"),
    ("orders", b"\x00\x00\x00\x03\xe7" + b"\x02x"),  # unknown schema id 999
    ("clickstream", b"\x00\x00\x00\x00\x65\x02"),  # truncated clickstream record
    ("supplier", b""),  # empty value
)
_EVENT_NAMES = {
    "black_friday": "Black Friday",
    "bf_weekend": "Black Friday weekend",
    "cyber_monday": "Cyber Monday",
    "week_before_christmas": "week before Christmas",
    "christmas_eve": "Christmas Eve",
    "day_after_christmas": "day after Christmas",
    "new_years_eve": "New Year's Eve",
}
LIVE_LEAD_DAYS = 8  # live streaming starts this many days before Black Friday
DISRUPTION_LIVE_DAY = 10  # the scheduled supplier episode starts on this live day


def default_start_date(backfill_days: int, black_friday_year: int = 2025) -> date:
    """First simulated day such that the live phase starts just before Black Friday.

    Fixed dates (not today's) so every run of the demo shows the same story.

    >>> default_start_date(365)
    datetime.date(2024, 11, 20)
    """
    from processors.calendar_features import black_friday

    live_start = black_friday(black_friday_year) - timedelta(days=LIVE_LEAD_DAYS)
    return live_start - timedelta(days=backfill_days)


def add_demo_parser(sub: Any) -> None:
    demo = sub.add_parser("demo", help="embedded stack, flows, dashboard, a simulated year + live")
    demo.add_argument("--days", type=int, default=365, help="days of history to backfill")
    demo.add_argument("--live-days", type=int, default=45, help="then stream N days live")
    demo.add_argument(
        "--day-seconds", type=float, default=3.0, help="wall seconds per live simulated day"
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--start-date", help="first simulated day, YYYY-MM-DD")
    demo.add_argument("--skus", type=int)
    demo.add_argument("--stores", type=int)
    demo.add_argument("--customers", type=int)
    demo.add_argument("--suppliers", type=int)
    demo.add_argument("--port", type=int, default=8050, help="dashboard port (busy: a free one)")
    demo.add_argument("--no-dashboard", action="store_true")
    demo.add_argument("--no-open", action="store_true", help="don't open the dashboard")
    demo.add_argument(
        "--exit-when-done",
        action="store_true",
        help="after the live days, wait for the flows to catch up, print reports, exit",
    )
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from infra.embedded import EmbeddedKafka, EmbeddedRedis

    started = time.monotonic()
    log_dir = settings.state_dir / "demo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedKafka(log_dir=log_dir) as kafka, EmbeddedRedis(log_dir=log_dir) as redis_server:
        settings = settings.replace(
            kafka=dataclasses.replace(settings.kafka, bootstrap_servers=kafka.info.address),
            redis=dataclasses.replace(settings.redis, url=redis_server.info.address),
        )
        where = [
            ("Kafka (Tansu, in memory: dev/demo only)", kafka.info.address, kafka.info.pid),
            ("Redis (Valkey)", redis_server.info.address, redis_server.info.pid),
        ]
        try:
            return _with_servers(args, settings, log_dir, where, started)
        except KeyboardInterrupt:
            print("\nCtrl-C: stopping the flows, the dashboard and the servers")
            return 130
        finally:
            print("stopped every process the demo started")


def _with_servers(
    args: argparse.Namespace,
    settings: Settings,
    log_dir: Path,
    where: list[tuple[str, str, int]],
    started: float,
) -> int:
    from infra.processes import Child, free_port
    from streams.demo_watch import Watcher
    from streams.kafka_io import create_topics

    created = create_topics(settings.kafka, settings.topics)
    print(f"topics: {', '.join(created)}")
    flags = _global_flags(args, settings)
    python = [sys.executable, "-m", "streams.cli", *flags]
    children = [Child("flows", [*python, "run", "--live"], log_dir / "flows.log")]
    url = None
    if not args.no_dashboard:
        port = args.port if args.port and _port_free(args.port) else free_port()
        url = f"http://127.0.0.1:{port}/"
        argv = [*python, "dashboard", "--port", str(port)]
        children.append(Child("dashboard", argv, log_dir / "dashboard.log"))
    try:
        for child in children:
            child.start()
        for child in children:
            address = url or "" if child.name == "dashboard" else ""
            where.append((f"{child.name} (log {child.log_path})", address, child.pid or 0))
        _print_where(where, settings, url, flags)
        if url and not args.no_open:
            _open_browser(url)
        with Watcher(settings, started, children) as watcher:
            produced = _produce(args, settings, watcher)
            if args.exit_when_done:
                watcher.wait_caught_up(produced)
                _model_reports(settings)
                return 0
            print("live days done: the flows and the dashboard keep running. Ctrl-C stops all.")
            while all(child.exit_code() is None for child in children):
                time.sleep(1.0)
            failed = [c for c in children if c.exit_code() not in (None, 0)]
            for child in failed:
                print(f"{child.name} exited with code {child.exit_code()}; see {child.log_path}")
            return 1 if failed else 0
    finally:
        for child in reversed(children):
            child.stop()


def _produce(args: argparse.Namespace, settings: Settings, watcher: Any) -> Counter[str]:
    """Backfill, poison, then the live days. Returns what Kafka confirmed, per family."""
    import holidays

    from processors.calendar_features import retail_event
    from streams.cli import backfill
    from streams.kafka_io import ConfirmingProducer, producer_config
    from streams.produce import EventProducer
    from streams.simulator import Simulator

    sim = Simulator(_simulation_config(args))
    producer = EventProducer(settings)
    t0 = time.monotonic()
    backfill(sim, producer, args.days)
    raw = ConfirmingProducer(producer_config(settings.kafka))
    for family, value in POISON:
        raw.produce(settings.topics.input_topic(family), value, key=b"poison")
    raw.flush_or_raise()
    watcher.say(
        f"backfill: {sum(producer.counts.values()):,} events and {len(POISON)} malformed "
        f"records in {time.monotonic() - t0:.1f} s"
    )
    if args.live_days:
        watcher.say(
            f"live: {args.live_days} simulated days at {args.day_seconds:g} s each "
            f"(a supplier disruption starts on live day {DISRUPTION_LIVE_DAY})"
        )
    public = holidays.country_holidays(sim.config.country)
    for n, (day, events) in enumerate(sim.continue_days(args.live_days), start=1):
        rate = len(events) / args.day_seconds if args.day_seconds > 0 else 0.0
        producer.send_all(events, rate=rate)
        event = retail_event(day)
        notes = [name for name in (public.get(day), _EVENT_NAMES.get(event or "", event)) if name]
        if n == DISRUPTION_LIVE_DAY:
            notes.append("supplier disruption starts")
        note = f"  <- {', '.join(notes)}" if notes else ""
        watcher.say(f"live {day} {day:%a}: {len(events):,} events{note}")
    counts: Counter[str] = Counter(producer.counts)
    counts.update(family for family, _ in POISON)
    return counts


def _simulation_config(args: argparse.Namespace) -> Any:
    from streams.simulator import SimulationConfig

    start = date.fromisoformat(args.start_date) if args.start_date else None
    fields: dict[str, Any] = {
        "seed": args.seed,
        "days": args.days,
        "start_date": start or default_start_date(args.days),
        "scheduled_disruptions": (args.days + DISRUPTION_LIVE_DAY - 1,),
    }
    for name in ("skus", "stores", "customers", "suppliers"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    return SimulationConfig(**fields)


def _global_flags(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The flags that point a child ``retailpulse`` at the demo's own servers."""
    flags = [
        "--bootstrap-servers",
        settings.kafka.bootstrap_servers,
        "--redis-url",
        settings.redis.require_url(),
        "--state-dir",
        str(settings.state_dir),
        "--log-level",
        getattr(args, "log_level", "INFO"),
    ]
    if getattr(args, "config", None):
        flags += ["--config", str(args.config)]
    return flags


def _print_where(
    where: list[tuple[str, str, int]], settings: Settings, url: str | None, flags: list[str]
) -> None:
    width = max(len(name) for name, _, _ in where)
    for name, address, pid in where:
        print(f"{name:<{width}}  {address}  pid {pid}")
    if url:
        print(f"\ndashboard: {url}")
    cmd = " ".join(["retailpulse", *flags[:4]])
    print(f"reports:   {cmd} report demand|churn|supply")
    print(f"metrics:   {cmd} metrics")
    print(f"dead letters: topic {settings.topics.dead_letter}\n")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _open_browser(url: str) -> None:
    """Open ``url`` in a graphical browser if there is one; never a text browser here.

    Without a display, :mod:`webbrowser` only knows console browsers (lynx, w3m), which
    would take over this terminal: those are :class:`webbrowser.GenericBrowser`.
    """
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return
    if type(browser) is not webbrowser.GenericBrowser:  # subclasses are graphical
        browser.open(url)


def _model_reports(settings: Settings) -> None:
    """What the model flows published: the same text as ``retailpulse report <flow>``."""
    from infra.cluster import connect
    from streams.cli import model_reports

    client = connect(settings.redis.require_url())
    try:
        for name, report in model_reports().items():
            print(f"\n== retailpulse report {name} ==")
            print(report(client, settings.redis.key_prefix))
    finally:
        client.close()
