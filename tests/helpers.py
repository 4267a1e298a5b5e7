"""Small builders shared by the tests (records that fit the schemas, Kafka-like messages)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage

T0 = 1_731_000_000_000  # 2024-11-07, a plausible event time


def order(**over: Any) -> dict[str, Any]:
    line = {
        "sku": "SKU-1",
        "quantity": 2,
        "unit_price": 9.99,
        "discount": 1.0,
        "promotion_id": None,
        "impression_id": None,
    }
    value = {
        "event_id": "o-1",
        "event_type": "ORDER_PLACED",
        "event_time": T0,
        "order_id": "O1",
        "customer_id": "C1",
        "store_id": "S1",
        "channel": "STORE",
        "currency": "USD",
        "lines": [line],
    }
    value.update(over)
    return value


def store(**over: Any) -> dict[str, Any]:
    value = {
        "event_id": "s-1",
        "event_type": "STORE_OPENED",
        "event_time": T0,
        "store_id": "S1",
        "region_id": "R1",
        "size_sqm": 1200.0,
        "timezone": "UTC",
    }
    value.update(over)
    return value


def click(**over: Any) -> dict[str, Any]:
    value = {
        "event_id": "c-1",
        "event_type": "PRODUCT_VIEW",
        "event_time": T0,
        "session_id": "sess",
        "anonymous_id": "anon",
        "customer_id": None,
        "channel": "WEB",
        "sku": "SKU-1",
        "quantity": None,
        "search_query": None,
        "page": None,
        "recommender_id": None,
        "impression_id": None,
        "position": None,
    }
    value.update(over)
    return value


def message(
    topic: str,
    value: bytes | None,
    *,
    offset: int = 0,
    partition: int = 0,
    key: bytes | None = b"k",
    broker_ms: int = T0 + 60_000,
    headers: list[tuple[str, bytes]] | None = None,
) -> KafkaSourceMessage[Any, Any]:
    return KafkaSourceMessage(
        key=key,
        value=value,
        topic=topic,
        headers=headers or [],
        latency=None,
        offset=offset,
        partition=partition,
        timestamp=(1, broker_ms),
    )


def sim_messages(
    events: Iterable[Any],
    *,
    families: Collection[str] | None = None,
    broker_lag_ms: int = 0,
) -> list[KafkaSourceMessage[Any, Any]]:
    """Simulator events as the messages KafkaSource would emit (Confluent Avro, per-family
    offsets from 0, broker time = event time + ``broker_lag_ms``)."""
    from streams.registry import ManifestResolver, SchemaCatalog
    from streams.serde import AvroSerializer
    from streams.settings import Settings

    topics = Settings().topics.input_topics()
    resolver = ManifestResolver(SchemaCatalog.load())
    encoders: dict[str, AvroSerializer] = {}
    offsets: dict[str, int] = {}
    out = []
    for ev in events:
        if families is not None and ev.family not in families:
            continue
        if ev.family not in encoders:
            encoders[ev.family] = AvroSerializer(resolver, ev.family)
        offset = offsets[ev.family] = offsets.get(ev.family, -1) + 1
        out.append(
            message(
                topics[ev.family],
                encoders[ev.family](ev.value),
                offset=offset,
                broker_ms=ev.event_time + broker_lag_ms,
            )
        )
    return out


def offline_flow(
    messages: list[KafkaSourceMessage[Any, Any]],
    extensions: Sequence[Any] = (),
    dead: list[Any] | None = None,
    writes: list[Any] | None = None,
    settings: Any = None,
) -> Any:
    """The whole dataflow on TestingSource/TestingSinks (default settings): the built flow."""
    from bytewax.testing import TestingSink, TestingSource

    from streams.dataflow import build_flow
    from streams.registry import ManifestResolver, SchemaCatalog
    from streams.settings import Settings

    return build_flow(
        Settings() if settings is None else settings,
        ManifestResolver(SchemaCatalog.load()),
        tail=False,
        source=TestingSource(messages),
        dead_letter_sink=TestingSink([] if dead is None else dead),
        redis_sink=TestingSink([] if writes is None else writes),
        extensions=extensions,
    )


def built_step_ids(extensions: Sequence[Any] = ()) -> set[str]:
    """The step ids (without the flow id) of the dataflow built with ``extensions``."""
    built = offline_flow([], extensions)
    return {s.step_id.split(".", 1)[1] for s in built.flow.substeps}


def run_testing_flow(
    messages: list[KafkaSourceMessage[Any, Any]],
    extensions: Sequence[Any] = (),
    settings: Any = None,
) -> tuple[list[Any], list[Any], list[Any]]:
    """Run the whole dataflow on TestingSource/TestingSink: (events, dead letters, writes)."""
    import bytewax.operators as op
    from bytewax.testing import TestingSink, run_main

    events: list[Any] = []
    dead: list[Any] = []
    writes: list[Any] = []
    built = offline_flow(messages, extensions, dead, writes, settings)
    op.output("test_events", built.events, TestingSink(events))
    run_main(built.flow)
    return events, dead, writes


def redis_state(client: Any, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` (prefix stripped) with its whole contents, by type, for
    comparing two runs; the sink's own liveness markers (``:v1:sink:*``, one per writer
    instance by design) are left out."""
    state: dict[str, Any] = {}
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        name = (key.decode() if isinstance(key, bytes) else key)[len(prefix) :]
        if name.startswith(":v1:sink:"):
            continue
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "hash":
            value: Any = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key)
        elif kind == "string":
            value = client.get(key)
        else:
            value = (kind, "unsupported")
        state[name] = value
    return state
