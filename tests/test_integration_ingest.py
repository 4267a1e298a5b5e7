"""End to end on a real broker and Redis: simulate -> run bounded -> Redis; dead letters.

The backend comes from tests/conftest.py: servers named by environment variables, else
Testcontainers where a Docker engine answers, else the embedded Tansu and Valkey.
"""

from __future__ import annotations

import math
import struct
from datetime import date
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from streams.errors import DeliveryError
from streams.kafka_io import ConfirmingProducer, create_topics, producer_config
from streams.metrics import ingest_snapshot, prometheus_text
from streams.produce import EventProducer
from streams.runner import run
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator
from tests.helpers import T0, order

pytestmark = pytest.mark.integration


def consume_all(settings: Settings, topic: str) -> list[Any]:
    """Every message of a topic, read by assignment up to the end of each partition."""
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": "tests",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    parts = [TopicPartition(topic, p, 0) for p in range(settings.topics.partitions)]
    consumer.assign(parts)
    messages, ended = [], set()
    try:
        while len(ended) < len(parts):
            for msg in consumer.consume(500, 2.0):
                if msg.error():
                    if msg.error().code() == -191:  # _PARTITION_EOF
                        ended.add(msg.partition())
                    continue
                messages.append(msg)
    finally:
        consumer.close()
    return messages


def test_topics_create_is_idempotent(settings: Settings):
    first = create_topics(settings.kafka, settings.topics)
    assert set(first.values()) == {"created"}
    assert set(first) == set(settings.topics.all_topics())
    second = create_topics(settings.kafka, settings.topics)
    assert set(second.values()) == {"exists"}


def test_simulate_run_bounded_counters_match(settings: Settings):
    create_topics(settings.kafka, settings.topics)
    sim = Simulator(
        SimulationConfig(
            seed=3, start_date=date(2024, 11, 20), days=10, skus=20, stores=3, customers=150
        )
    )
    producer = EventProducer(settings)
    produced = producer.send_all(sim.events())
    assert sum(produced.values()) > 300 and produced["orders"] > 0

    run(settings, live=False)

    client = redis.Redis.from_url(settings.redis.require_url())
    snapshot = ingest_snapshot(client, settings.redis.key_prefix)
    client.close()
    for family, snap in snapshot.items():
        assert snap["events"] == produced.get(family, 0), family
        assert snap["dead_letters"] == 0
        assert sum(snap["offsets"].values()) == produced.get(family, 0)
    assert snapshot["orders"]["last_event_time"] >= 1_732_060_800_000  # on/after 2024-11-20
    text = prometheus_text(settings)
    assert f'retailpulse_events_total{{family="orders"}} {float(produced["orders"])}' in text
    assert "retailpulse_consumer_lag_messages" in text

    # A second bounded run over the same topics leaves Redis exactly as it was.
    run(settings, live=False)
    client = redis.Redis.from_url(settings.redis.require_url())
    assert ingest_snapshot(client, settings.redis.key_prefix) == snapshot
    client.close()


def _bad_records(settings: Settings) -> dict[str, tuple[str, bytes | None, str]]:
    """name -> (family, value bytes, expected stage)."""
    from streams.registry import ManifestResolver, SchemaCatalog
    from streams.serde import AvroSerializer

    enc = AvroSerializer(ManifestResolver(SchemaCatalog.load()), "orders")
    good = enc(order())
    line = order()["lines"][0]

    def with_line(**over: Any) -> bytes:
        return enc(order(lines=[{**line, **over}]))

    return {
        "random bytes": ("orders", bytes(range(7, 47)), "decode"),
        "wrong magic": ("orders", b"\x01" + good[1:], "decode"),
        "unknown schema id": ("orders", good[:1] + struct.pack(">I", 7777) + good[5:], "decode"),
        "truncated": ("orders", good[:-6], "decode"),
        "trailing bytes": ("orders", good + b"\x00\x00", "decode"),
        "oversized": ("orders", good + b"\x00" * 30_000, "decode"),
        "tombstone": ("orders", None, "decode"),
        "nan price": ("orders", with_line(unit_price=math.nan), "validate"),
        "negative quantity": ("orders", with_line(quantity=-5), "validate"),
        "absurd price": ("orders", with_line(unit_price=5e9), "validate"),
        "before 2000": ("orders", enc(order(event_time=900_000_000_000)), "validate"),
        "far future": ("orders", enc(order(event_time=T0 + 400 * 86_400_000)), "validate"),
        "missing id": ("orders", enc(order(order_id="")), "validate"),
        "store record on orders": (
            "orders",
            b"\x00" + struct.pack(">I", 601) + good[5:],
            "decode",
        ),
    }


def test_malformed_barrage_lands_in_dead_letters_once_each(settings: Settings):
    import dataclasses

    settings = settings.replace(serde=dataclasses.replace(settings.serde, max_message_bytes=20_000))
    create_topics(settings.kafka, settings.topics)
    topic = settings.topics.input_topic("orders")
    producer = ConfirmingProducer(producer_config(settings.kafka))
    from streams.registry import ManifestResolver, SchemaCatalog
    from streams.serde import AvroSerializer

    enc = AvroSerializer(ManifestResolver(SchemaCatalog.load()), "orders")
    bad = _bad_records(settings)
    good_count = 0
    for i, (name, (_, value, _)) in enumerate(bad.items()):
        producer.produce(topic, enc(order(event_id=f"good-{i}")), key=b"k", timestamp_ms=T0)
        producer.produce(
            topic, value, key=name.encode(), headers=[("case", name.encode())], timestamp_ms=T0
        )
        good_count += 1
    producer.produce(topic, enc(order(event_id="good-last")), key=b"k", timestamp_ms=T0)
    good_count += 1
    producer.flush_or_raise()

    run(settings, live=False)

    dead = consume_all(settings, settings.topics.dead_letter)
    by_case: dict[str, list[Any]] = {}
    for msg in dead:
        headers = dict(msg.headers() or [])
        by_case.setdefault(headers["case"].decode(), []).append((msg, headers))
    assert sorted(by_case) == sorted(bad), "every bad record once, nothing else"
    for name, entries in by_case.items():
        assert len(entries) == 1, name
        msg, headers = entries[0]
        _, value, stage = bad[name]
        assert msg.value() == value, f"{name}: original bytes kept"
        assert msg.key() == name.encode()
        assert headers["rp.dlq.stage"].decode() == stage, name
        assert headers["rp.dlq.topic"].decode() == topic
        assert int(headers["rp.dlq.offset"]) >= 0 and headers["rp.dlq.partition"]
        assert headers["rp.dlq.error_class"] in (b"DecodeError", b"ValidationError")
        assert headers["rp.dlq.message"]
    assert by_case["unknown schema id"][0][1]["rp.dlq.schema_id"] == b"7777"

    client = redis.Redis.from_url(settings.redis.require_url())
    snap = ingest_snapshot(client, settings.redis.key_prefix)["orders"]
    client.close()
    assert snap["events"] == good_count
    assert snap["dead_letters"] == len(bad)


def test_confirming_producer_fails_loudly_when_nothing_acknowledges():
    closed = Settings().kafka.__class__(bootstrap_servers="127.0.0.1:9")  # discard port
    producer = ConfirmingProducer(
        producer_config(closed, **{"message.timeout.ms": 1500}), flush_timeout_s=5
    )
    producer.produce("anything", b"value")
    with pytest.raises(DeliveryError):
        producer.flush_or_raise()
