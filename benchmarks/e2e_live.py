"""Event-to-Redis latency of a live run at a fixed produce rate.

Method. The flows run live (``retailpulse run --live`` as a subprocess) on a fresh set of
topics. This process produces simulated events at ``rate`` per second, each with its
``event_time`` set to the wall-clock send time (so the flows see "now" events, as in
production), and records per message the send time and, from the delivery report, its
topic, partition and offset. A poller thread reads the ingest ``offsets`` hashes
(``<prefix>:v1:offsets:<family>``, field ``<topic>:<partition>`` = next offset, written by
the same Redis sink batch as every model write of that Kafka batch; docs/redis.md) in one
pipelined round trip every ``poll_s``. A message's latency is the time of the first poll
that shows its partition's next offset above its own offset, minus its send time.

Resolution: the poll interval plus one poll round trip (~0.3 ms) in the worst case (the
figure is an upper bound by at most that much); the producer's ``linger.ms`` (5 ms) is part
of the measured latency, as it is for any producer.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
from confluent_kafka import Producer

from infra.redis_sink import redis_key
from streams.registry import ManifestResolver, SchemaCatalog
from streams.serde import AvroSerializer
from streams.settings import Settings

__all__ = ["measure_latency"]


class _Poller(threading.Thread):
    def __init__(self, settings: Settings, poll_s: float) -> None:
        super().__init__(daemon=True)
        self._client = redis.Redis.from_url(settings.redis.require_url())
        self._keys = [
            redis_key(settings.redis.key_prefix, "offsets", f)
            for f in settings.topics.input_topics()
        ]
        self._poll_s = poll_s
        self.samples: list[tuple[float, dict[str, int]]] = []  # (time, "topic:p" -> next)
        self.stop = threading.Event()

    def snapshot(self) -> dict[str, int]:
        pipe = self._client.pipeline(transaction=False)
        for key in self._keys:
            pipe.hgetall(key)
        merged: dict[str, int] = {}
        for fields in pipe.execute():
            for k, v in fields.items():
                if k != b"_version":
                    merged[k.decode()] = int(v)
        return merged

    def run(self) -> None:
        last: dict[str, int] = {}
        while not self.stop.is_set():
            now_offsets = self.snapshot()
            seen = time.time()
            if now_offsets != last:  # only changes matter; keeps the list short
                self.samples.append((seen, now_offsets))
                last = now_offsets
            time.sleep(self._poll_s)


def _latencies(
    sent: list[tuple[float, str, int, int]], samples: list[tuple[float, dict[str, int]]]
) -> tuple[list[float], int]:
    """Per sent message, the first sample showing it written, minus its send time."""
    by_part: dict[str, list[tuple[int, float]]] = {}
    for seen, offsets in samples:
        for part, nxt in offsets.items():
            by_part.setdefault(part, []).append((nxt, seen))
    out: list[float] = []
    missing = 0
    for t_send, topic, partition, offset in sent:
        series = by_part.get(f"{topic}:{partition}", [])
        hit = next((seen for nxt, seen in series if nxt > offset), None)
        if hit is None:
            missing += 1
        else:
            out.append(max(0.0, hit - t_send))
    return out, missing


def measure_latency(
    settings: Settings,
    events: Iterable[Any],
    *,
    rate: float,
    duration_s: float,
    poll_s: float = 0.002,
    drain_s: float = 10.0,
) -> dict[str, Any]:
    """Produce ``events`` (SimEvent-like) at ``rate``/s for ``duration_s``; latency figures.

    The live flow must already be running on ``settings``' topics and Redis prefix.
    """
    resolver = ManifestResolver(SchemaCatalog.load())
    topics = settings.topics.input_topics()
    serializers = {f: AvroSerializer(resolver, f) for f in topics}
    producer = Producer(
        {**settings.kafka.client_config(), "linger.ms": 5, "acks": "all", "log_level": 0}
    )
    sent: list[tuple[float, str, int, int]] = []
    send_time: dict[int, float] = {}

    def delivered(seq: int) -> Any:
        def cb(err: Any, msg: Any) -> None:
            if err is None:
                sent.append((send_time.pop(seq), msg.topic(), msg.partition(), msg.offset()))

        return cb

    poller = _Poller(settings, poll_s)
    poller.start()
    started = time.monotonic()
    n = 0
    for n, ev in enumerate(events, start=1):
        ahead = n / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        if time.monotonic() - started >= duration_s:
            break
        now = time.time()
        value = dict(ev.value)
        value["event_time"] = int(now * 1000)
        data = serializers[ev.family](value)
        send_time[n] = now
        producer.produce(topics[ev.family], data, key=ev.key.encode(), on_delivery=delivered(n))
        producer.poll(0)
    producer.flush(30)
    produced_s = time.monotonic() - started
    # Wait until everything sent is visible (or drain_s passes), then stop polling.
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:
        if not sent:
            break
        last_seen = poller.samples[-1][1] if poller.samples else {}
        if all(last_seen.get(f"{t}:{p}", 0) > o for _, t, p, o in sent[-50:]):
            break
        time.sleep(0.05)
    time.sleep(0.05)
    poller.stop.set()
    poller.join()
    lat, missing = _latencies(sent, poller.samples)
    lat.sort()

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    return {
        "target_rate": round(rate, 1),
        "achieved_rate": round(len(sent) / produced_s, 1),
        "messages": len(sent),
        "not_seen_in_redis": missing,
        "latency_ms_p50": round(pct(0.50), 1),
        "latency_ms_p90": round(pct(0.90), 1),
        "latency_ms_p99": round(pct(0.99), 1),
        "latency_ms_max": round(lat[-1] * 1000, 1) if lat else None,
        "latency_ms_mean": round(statistics.fmean(lat) * 1000, 1) if lat else None,
        "poll_interval_ms": poll_s * 1000,
        "polls_with_changes": len(poller.samples),
    }
