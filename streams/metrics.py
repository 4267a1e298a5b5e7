"""Operational metrics in Prometheus text format, read from Redis and the broker.

The running flow writes its counters to Redis (``<prefix>:v1:ingest:<family>`` and
``...:offsets:<family>``); this module turns them into Prometheus exposition text, adding
consumer lag per partition from the broker's high watermarks. Note: the embedded Tansu
broker may report a high watermark a little short, so its lag can read low (never trust it
for "caught up"; bounded runs use end-of-partition events instead).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from infra.cluster import RedisClient, connect
from infra.redis_sink import redis_key
from streams.settings import FAMILIES, Settings

__all__ = ["ingest_snapshot", "prometheus_text"]


def _int(value: bytes | None, default: int = 0) -> int:
    return int(value) if value is not None else default


def ingest_snapshot(client: RedisClient, prefix: str) -> dict[str, dict[str, Any]]:
    """family -> {events, dead_letters, dead_letters_by_stage, last_event_time, offsets}."""
    pipe = client.pipeline(transaction=False)
    for family in FAMILIES:
        pipe.hgetall(redis_key(prefix, "ingest", family))
        pipe.hgetall(redis_key(prefix, "offsets", family))
    replies = pipe.execute()
    snapshot: dict[str, dict[str, Any]] = {}
    for i, family in enumerate(FAMILIES):
        ingest: dict[bytes, bytes] = replies[2 * i]
        offsets: dict[bytes, bytes] = replies[2 * i + 1]
        by_stage = {
            k.decode().split(":", 1)[1]: int(v)
            for k, v in ingest.items()
            if k.startswith(b"dead_letters:")
        }
        snapshot[family] = {
            "events": _int(ingest.get(b"events")),
            "dead_letters": _int(ingest.get(b"dead_letters")),
            "dead_letters_by_stage": by_stage,
            "last_event_time": _int(ingest.get(b"last_event_time"), -1),
            "offsets": {k.decode(): int(v) for k, v in offsets.items() if not k.startswith(b"_")},
        }
    return snapshot


def _high_watermarks(settings: Settings, positions: list[str]) -> dict[str, int]:
    if not positions:
        return {}
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": "retailpulse-metrics",
            "enable.auto.commit": False,
        }
    )
    marks: dict[str, int] = {}
    try:
        for where in positions:
            topic, _, partition = where.rpartition(":")
            try:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, int(partition)), timeout=5
                )
            except KafkaException:
                continue
            marks[where] = high
    finally:
        consumer.close()
    return marks


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: dict[str, dict[str, Any]], marks: dict[str, int]) -> None:
        self._snapshot = snapshot
        self._marks = marks

    def collect(self) -> Iterator[GaugeMetricFamily]:
        events = GaugeMetricFamily(
            "retailpulse_events_total", "Events accepted per family", labels=["family"]
        )
        dead = GaugeMetricFamily(
            "retailpulse_dead_letters_total",
            "Dead letters per family and stage",
            labels=["family", "stage"],
        )
        last = GaugeMetricFamily(
            "retailpulse_last_event_time_seconds",
            "Newest event time seen per family",
            labels=["family"],
        )
        lag = GaugeMetricFamily(
            "retailpulse_consumer_lag_messages",
            "High watermark minus next offset to process",
            labels=["topic", "partition"],
        )
        for family, snap in self._snapshot.items():
            events.add_metric([family], snap["events"])
            for stage, n in snap["dead_letters_by_stage"].items():
                dead.add_metric([family, stage], n)
            if snap["last_event_time"] >= 0:
                last.add_metric([family], snap["last_event_time"] / 1000)
            for where, nxt in snap["offsets"].items():
                if where in self._marks:
                    topic, _, partition = where.rpartition(":")
                    lag.add_metric([topic, partition], max(self._marks[where] - nxt, 0))
        yield from (events, dead, last, lag)


def prometheus_text(settings: Settings, *, with_lag: bool = True) -> str:
    client = connect(settings.redis.require_url())
    try:
        snapshot = ingest_snapshot(client, settings.redis.key_prefix)
    finally:
        client.close()
    positions = [w for s in snapshot.values() for w in s["offsets"]]
    marks = _high_watermarks(settings, positions) if with_lag else {}
    registry = CollectorRegistry()
    registry.register(_SnapshotCollector(snapshot, marks))
    return generate_latest(registry).decode()
