"""Live data for the dashboard: one Redis subscription per server, fanned out to browsers.

One listener thread holds the server's only pub/sub connection (SUBSCRIBE to the flows'
channels) and turns notifications into page events; one ticker thread reads the ingest
counters every ``tick_s`` and pushes a health snapshot (events/s are differences of the
absolute counts, taken here); an optional third thread asks the broker for high
watermarks so consumer lag can be shown. Browsers each get a bounded queue: a browser
that stops reading is dropped (its EventSource reconnects and reloads the state) rather
than letting the server's memory grow.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis

from streams.dashboard.queries import DashboardReader
from streams.dashboard.state import AlertBook, RateMeter, SeriesHistory, forecast_fields
from streams.errors import RetailPulseError
from streams.settings import KafkaSettings

__all__ = ["Hub", "LiveFeed", "Subscriber", "sse_frame"]

log = logging.getLogger(__name__)


def sse_frame(event: str, data: Any) -> bytes:
    """One server-sent event, ready to write.

    >>> sse_frame("alert", {"id": 1})
    b'event: alert\\ndata: {"id": 1}\\n\\n'
    """
    return f"event: {event}\ndata: {json.dumps(data, separators=(', ', ': '))}\n\n".encode()


class Subscriber:
    """One browser's queue of frames; ``series`` filters forecast events to its chart."""

    def __init__(self, series: str | None, maxsize: int) -> None:
        self.series = series
        self.frames: queue.Queue[bytes] = queue.Queue(maxsize=maxsize)
        self.dropped = False  # fell behind: the SSE loop closes the connection


class Hub:
    """Fans frames out to every connected browser; never blocks the publisher."""

    def __init__(self, max_clients: int = 64, queue_size: int = 1024) -> None:
        self.max_clients = max_clients
        self.queue_size = queue_size
        self.closed = False
        self._lock = threading.Lock()
        self._subs: set[Subscriber] = set()

    def register(self, series: str | None) -> Subscriber | None:
        """A new subscriber, or None when the server is full or closing."""
        with self._lock:
            if self.closed or len(self._subs) >= self.max_clients:
                return None
            sub = Subscriber(series, self.queue_size)
            self._subs.add(sub)
            return sub

    def unregister(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)

    def publish(self, event: str, data: Any, *, series: str | None = None) -> None:
        """Queue ``event`` for every subscriber (only those watching ``series``, if given)."""
        with self._lock:
            subs = [s for s in self._subs if series is None or s.series == series]
        if not subs:  # a bounded run publishes a day for every series: skip the encoding
            return
        frame = sse_frame(event, data)
        for sub in subs:
            try:
                sub.frames.put_nowait(frame)
            except queue.Full:
                sub.dropped = True

    def __len__(self) -> int:
        return len(self._subs)

    def close(self) -> None:
        self.closed = True


class LiveFeed:
    """The server's subscription, ticker and in-memory state (read by the HTTP handlers)."""

    def __init__(
        self,
        reader: DashboardReader,
        *,
        kafka: KafkaSettings | None = None,
        tick_s: float = 1.0,
        slow_every: int = 5,
        lag_every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.reader = reader
        self.hub = Hub()
        self.alerts = AlertBook()
        self.history = SeriesHistory()
        self.recent: dict[str, deque[dict[str, Any]]] = {
            "churn": deque(maxlen=50),
            "reorder": deque(maxlen=50),
        }
        self.notifications = dict.fromkeys(reader.channels().values(), 0)
        self.health: dict[str, Any] = {}
        self.lock = threading.Lock()
        self._kafka = kafka
        self._tick_s = tick_s
        self._slow_every = slow_every
        self._lag_every_s = lag_every_s
        self._clock = clock
        self._wall = wall  # only to show "updated at" on the page: the dashboard is an edge
        self._meter = RateMeter()
        self._marks: dict[str, int] | None = None
        self._positions: list[str] = []  # "<topic>:<partition>" the flows report offsets for
        self._lag_error = "" if kafka is not None else "no Kafka configured"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pubsub: redis.client.PubSub | None = None
        self._forecast_head = reader.key("forecast", "")

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe first, then seed the alert book, so no entry falls in between."""
        self._subscribe()
        self._seed_alerts()
        targets: list[Callable[[], None]] = [self._listen, self._tick]
        if self._kafka is not None:
            targets.append(self._probe_lag)
        for target in targets:
            t = threading.Thread(target=target, name=f"dashboard{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self.hub.close()
        for t in self._threads:
            t.join(timeout=5)
        if self._pubsub is not None:
            self._pubsub.close()

    def _subscribe(self) -> None:
        self._pubsub = self.reader.pubsub()
        self._pubsub.subscribe(*self.reader.channels())

    def _seed_alerts(self) -> None:
        entries = self.reader.alert_entries()
        with self.lock:
            for entry_id, fields in entries:
                self.alerts.apply(entry_id, fields)

    # -- pub/sub --------------------------------------------------------------------------

    def _listen(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                if self._pubsub is None:
                    self._subscribe()
                    self._seed_alerts()  # entries published while we were away
                    delay = 0.5
                msg = self._pubsub.get_message(timeout=0.5) if self._pubsub else None
                if msg and msg.get("type") == "message":
                    self.handle(_text(msg["channel"]), _text(msg["data"]))
            except (redis.RedisError, RetailPulseError) as exc:
                log.warning("dashboard subscription lost (%s); retrying in %.1f s", exc, delay)
                if self._pubsub is not None:
                    self._pubsub.close()
                self._pubsub = None
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def handle(self, channel: str, data: str) -> None:
        """One notification -> state update and a page event."""
        name = self.reader.channels().get(channel)
        try:
            payload = json.loads(data)
        except ValueError:
            log.warning("dashboard: not JSON on %s: %.80r", channel, data)
            return
        if name is None or not isinstance(payload, dict):
            return
        with self.lock:
            self.notifications[name] += 1
            if name == "forecast":
                series = str(payload.get("key", ""))[len(self._forecast_head) :]
                fc = forecast_fields(payload)
                self.history.record(series, fc)
                points = self.history.points(series)[-1:]
                event: tuple[str, Any, str | None] = (
                    "forecast", {"series": series, "forecast": fc, "points": points}, series
                )  # fmt: skip
            elif name == "alert":
                row = self.alerts.apply(str(payload.get("id", "0-0")), payload)
                if row is None:
                    return
                event = ("alert", row, None)
            else:
                payload["entity"] = str(payload.pop("key", "")).rsplit(":v1:", 1)[-1]
                self.recent[name].appendleft(payload)
                event = (name, payload, None)
        self.hub.publish(event[0], event[1], series=event[2])

    # -- periodic snapshots ---------------------------------------------------------------

    def _tick(self) -> None:
        n = 0
        while not self._stop.is_set():
            self.hub.publish("health", self.refresh_health())
            if n % self._slow_every == 0:
                try:
                    self.hub.publish("scores", self.reader.scores())
                    self.hub.publish("churn_top", self.reader.churn_top())
                except RetailPulseError as exc:
                    log.warning("%s", exc)
            n += 1
            self._stop.wait(self._tick_s)

    def refresh_health(self) -> dict[str, Any]:
        """Read the ingest counters now; return (and keep) the health snapshot."""
        try:
            snap = self.reader.ingest()
            redis_state = "ok"
        except RetailPulseError as exc:
            snap, redis_state = {}, str(exc)
        self._positions = [w for s in snap.values() for w in s["offsets"]]
        rates = self._meter.update(self._clock(), {f: s["events"] for f, s in snap.items()})
        marks = self._marks
        families = []
        for family, s in snap.items():
            known = [(marks[w], n) for w, n in s["offsets"].items() if marks and w in marks]
            lag = sum(max(high - n, 0) for high, n in known) if known else None
            families.append(
                {
                    "family": family,
                    "events": s["events"],
                    "events_per_s": rates.get(family, 0.0),
                    "dead_letters": s["dead_letters"],
                    "dead_letters_by_stage": s["dead_letters_by_stage"],
                    "last_event_time": s["last_event_time"],
                    "lag": lag,
                }
            )
        with self.lock:
            health = {
                "time": int(self._wall() * 1000),
                "redis": redis_state,
                "lag_note": self._lag_error,
                "families": families,
                "events": sum(f["events"] for f in families),
                "events_per_s": round(sum(f["events_per_s"] for f in families), 2),
                "dead_letters": sum(f["dead_letters"] for f in families),
                "notifications": dict(self.notifications),
                "alerts_open": sum(1 for r in self.alerts.rows() if r["state"] == "open"),
                "clients": len(self.hub),
            }
            self.health = health
        return health

    # -- consumer lag -----------------------------------------------------------------------

    def _probe_lag(self) -> None:
        """High watermarks of the partitions the flows report offsets for (read-only:
        a consumer that never subscribes, so it joins no group and commits nothing)."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        if self._kafka is None:
            return
        try:
            consumer = Consumer(
                {
                    **self._kafka.client_config(),
                    "group.id": "retailpulse-dashboard",
                    "enable.auto.commit": False,
                }
            )
        except (KafkaException, RetailPulseError) as exc:
            self._lag_error = f"consumer lag unavailable: {exc}"
            return
        try:
            while not self._stop.is_set():
                positions = self._positions
                try:
                    marks = {}
                    for where in positions:
                        topic, _, partition = where.rpartition(":")
                        tp = TopicPartition(topic, int(partition))
                        marks[where] = consumer.get_watermark_offsets(tp, timeout=3)[1]
                    if positions:
                        self._marks, self._lag_error = marks, ""
                except KafkaException as exc:
                    self._lag_error = f"consumer lag unavailable: {exc}"
                self._stop.wait(self._lag_every_s if positions else self._tick_s)
        finally:
            consumer.close()


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
