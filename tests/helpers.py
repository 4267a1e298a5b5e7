"""Small builders shared by the tests (records that fit the schemas, Kafka-like messages)."""

from __future__ import annotations

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
