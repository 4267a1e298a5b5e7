"""The simulator's output record, its id counters and one builder per event family.

Builders fill every schema field (optional ones with ``None``) in schema order, so each
value validates against its ``.avsc`` as is. Ids are sequential per kind, never random: a
run's ids depend only on the seed and the order in which things happen.

>>> ids = Ids(seed=7)
>>> ev = store_event(ids, 0, "S001", "R01", 1500.0, "UTC")
>>> ev.key, ev.value["event_id"], ev.value["event_type"]
('S001', 'st7-000000001', 'STORE_OPENED')
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

__all__ = [
    "DAY_MS",
    "FAMILIES",
    "HOUR_MS",
    "Ids",
    "SimEvent",
    "catalog_event",
    "click_event",
    "day_ms",
    "inventory_event",
    "order_event",
    "sample_time",
    "sample_times",
    "store_event",
    "supplier_event",
]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
FAMILIES = ("stores", "catalog", "clickstream", "orders", "supplier", "inventory")
_EPOCH = date(1970, 1, 1)
_PREFIX = {
    "stores": "st",
    "catalog": "ca",
    "clickstream": "ck",
    "orders": "or",
    "supplier": "su",
    "inventory": "in",
}

# Hour-of-day weights. Stores trade 08:00-21:00 with lunch and after-work peaks; online
# traffic never stops but peaks in the evening.
_STORE_HOURS = np.array(
    [0] * 8 + [3, 5, 7, 8, 10, 9, 7, 7, 8, 10, 11, 8, 5] + [0] * 3, dtype=np.float64
)
_ONLINE_HOURS = np.array(
    [2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 6, 6, 6, 5, 5, 5, 6, 7, 9, 10, 10, 8, 4],
    dtype=np.float64,
)
PROFILES = {
    "store": _STORE_HOURS / _STORE_HOURS.sum(),
    "online": _ONLINE_HOURS / _ONLINE_HOURS.sum(),
}
_CUMULATIVE = {name: np.cumsum(p) for name, p in PROFILES.items()}
_CUMULATIVE_LISTS = {name: c.tolist() for name, c in _CUMULATIVE.items()}


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One event: its family, Kafka key, schema-shaped value and event time (epoch ms)."""

    family: str
    key: str
    value: dict[str, Any]
    event_time: int


def day_ms(d: date) -> int:
    """UTC midnight of ``d`` in epoch milliseconds (exact integer arithmetic)."""
    return (d - _EPOCH).days * DAY_MS


def sample_times(rng: np.random.Generator, start_ms: int, n: int, profile: str) -> list[int]:
    """``n`` times within the day starting at ``start_ms``, following an hourly profile."""
    if n <= 0:
        return []
    cum = _CUMULATIVE[profile]
    # Inverse-CDF sampling: much cheaper than rng.choice(p=...), which re-validates p.
    hours = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), 23)
    offsets = hours * HOUR_MS + (rng.random(n) * HOUR_MS).astype(np.int64)
    return (offsets + start_ms).tolist()


def sample_time(rng: np.random.Generator, start_ms: int, profile: str) -> int:
    """One time of day (the scalar fast path of :func:`sample_times`)."""
    cum = _CUMULATIVE_LISTS[profile]
    u, v = rng.random(2).tolist()
    hour = min(bisect.bisect_right(cum, u * cum[-1]), 23)
    return start_ms + hour * HOUR_MS + int(v * HOUR_MS)


class Ids:
    """Sequential ids per kind; event ids carry the seed so two runs never collide."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._counters: dict[str, int] = {}

    def next(self, kind: str) -> int:
        n = self._counters.get(kind, 0) + 1
        self._counters[kind] = n
        return n

    def event_id(self, family: str) -> str:
        return f"{_PREFIX[family]}{self._seed}-{self.next(family):09d}"

    def make(self, prefix: str, width: int = 9) -> str:
        return f"{prefix}{self.next(prefix):0{width}d}"


def store_event(
    ids: Ids, t: int, store_id: str, region_id: str, size_sqm: float | None, timezone: str
) -> SimEvent:
    value = {
        "event_id": ids.event_id("stores"),
        "event_type": "STORE_OPENED",
        "event_time": t,
        "store_id": store_id,
        "region_id": region_id,
        "size_sqm": size_sqm,
        "timezone": timezone,
    }
    return SimEvent("stores", store_id, value, t)


def catalog_event(
    ids: Ids,
    event_type: str,
    t: int,
    *,
    sku: str,
    name: str | None,
    category_id: str,
    department_id: str,
    price: float,
    currency: str,
    supplier_id: str | None,
    launch_date: int | None,
) -> SimEvent:
    value = {
        "event_id": ids.event_id("catalog"),
        "event_type": event_type,
        "event_time": t,
        "sku": sku,
        "name": name,
        "category_id": category_id,
        "department_id": department_id,
        "price": price,
        "currency": currency,
        "supplier_id": supplier_id,
        "launch_date": launch_date,
    }
    return SimEvent("catalog", sku, value, t)


def click_event(
    ids: Ids,
    event_type: str,
    t: int,
    session_id: str,
    anonymous_id: str,
    customer_id: str | None,
    channel: str,
    *,
    sku: str | None = None,
    quantity: int | None = None,
    search_query: str | None = None,
    page: str | None = None,
    recommender_id: str | None = None,
    impression_id: str | None = None,
    position: int | None = None,
) -> SimEvent:
    value = {
        "event_id": ids.event_id("clickstream"),
        "event_type": event_type,
        "event_time": t,
        "session_id": session_id,
        "anonymous_id": anonymous_id,
        "customer_id": customer_id,
        "channel": channel,
        "sku": sku,
        "quantity": quantity,
        "search_query": search_query,
        "page": page,
        "recommender_id": recommender_id,
        "impression_id": impression_id,
        "position": position,
    }
    return SimEvent("clickstream", anonymous_id, value, t)


def order_event(
    ids: Ids,
    event_type: str,
    t: int,
    order_id: str,
    customer_id: str | None,
    store_id: str,
    channel: str,
    currency: str,
    lines: list[dict[str, Any]],
) -> SimEvent:
    value = {
        "event_id": ids.event_id("orders"),
        "event_type": event_type,
        "event_time": t,
        "order_id": order_id,
        "customer_id": customer_id,
        "store_id": store_id,
        "channel": channel,
        "currency": currency,
        "lines": lines,
    }
    return SimEvent("orders", store_id, value, t)


def supplier_event(
    ids: Ids,
    event_type: str,
    t: int,
    *,
    supplier_id: str,
    po_id: str,
    sku: str,
    store_id: str,
    quantity_ordered: int | None = None,
    quantity: int | None = None,
    shipment_id: str | None = None,
    expected_date: int | None = None,
    actual_date: int | None = None,
    delay_days: float | None = None,
    severity: str | None = None,
    reason: str | None = None,
) -> SimEvent:
    value = {
        "event_id": ids.event_id("supplier"),
        "event_type": event_type,
        "event_time": t,
        "supplier_id": supplier_id,
        "po_id": po_id,
        "sku": sku,
        "store_id": store_id,
        "quantity_ordered": quantity_ordered,
        "quantity": quantity,
        "shipment_id": shipment_id,
        "expected_date": expected_date,
        "actual_date": actual_date,
        "delay_days": delay_days,
        "severity": severity,
        "reason": reason,
    }
    return SimEvent("supplier", supplier_id, value, t)


def inventory_event(
    ids: Ids, t: int, sku: str, store_id: str, on_hand: int, on_order: int | None
) -> SimEvent:
    value = {
        "event_id": ids.event_id("inventory"),
        "event_time": t,
        "sku": sku,
        "store_id": store_id,
        "on_hand": on_hand,
        "on_order": on_order,
    }
    return SimEvent("inventory", store_id, value, t)
