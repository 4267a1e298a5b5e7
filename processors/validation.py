"""Is a decoded event plausible? Strict checks per family, each failure naming the field.

A record that decodes but cannot be true (NaN price, zero quantity, a timestamp in 1970 or
a week ahead of the broker) would poison every model downstream, so it goes to the
dead-letter topic instead.

Every event passes here, so the checks are written for the common case (all fine): plain
comparisons inline, no per-field helper calls or f-strings until something fails
(benchmarks/bench_e2e.py measured the helper-per-field version at about a third of the
Avro decode's cost).

>>> limits = ValidationLimits()
>>> validate("stores", {"event_id": "e", "event_time": 1_700_000_000_000, "store_id": "S1",
...     "region_id": "R1", "size_sqm": float("nan")}, broker_time_ms=None, limits=limits)
Traceback (most recent call last):
...
streams.errors.ValidationError: size_sqm: nan is not a finite number
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.errors import ValidationError

__all__ = ["ValidationLimits", "validate"]

_isfinite = math.isfinite


@dataclass(frozen=True)
class ValidationLimits:
    """What a plausible event looks like (settings section ``[validation]``)."""

    max_quantity: int = 10_000  # units on one order line or cart change
    max_supply_quantity: int = 10_000_000  # units on a purchase order, shipment or stock count
    max_unit_price: float = 1_000_000.0
    max_array_items: int = 1_000
    max_string_chars: int = 4_096
    min_event_time_ms: int = 946_684_800_000  # 2000-01-01T00:00:00Z
    max_ahead_of_broker_ms: int = 86_400_000  # one day


def _fail(field: str, why: str) -> ValidationError:
    return ValidationError(f"{field}: {why}")


def _ids(record: Mapping[str, Any], *names: str) -> None:
    for name in names:
        if not record.get(name):
            raise _fail(name, "missing or empty id")


def _number(record: Mapping[str, Any], name: str, low: float, high: float) -> None:
    value = record.get(name)
    if value is None:
        return
    if not _isfinite(value):
        raise _fail(name, f"{value} is not a finite number")
    if not low <= value <= high:
        raise _fail(name, f"{value} is outside [{low}, {high}]")


def _strings(record: Mapping[str, Any], limit: int, prefix: str = "") -> None:
    for name, value in record.items():
        if isinstance(value, str) and len(value) > limit:
            raise _fail(prefix + name, f"string of {len(value)} characters exceeds {limit}")


def _time(record: Mapping[str, Any], name: str, limits: ValidationLimits) -> None:
    value = record.get(name)
    if value is not None and value < limits.min_event_time_ms:
        raise _fail(name, f"{value} ms is before 2000-01-01 (min_event_time_ms)")


def _line_error(i: int, line: Mapping[str, Any], lim: ValidationLimits) -> ValidationError:
    """The error for order line ``i``, which failed the fast check in :func:`_orders`."""
    where = f"lines[{i}]."
    if not line.get("sku"):
        return _fail(where + "sku", "missing or empty id")
    quantity = line["quantity"]
    if not 0 < quantity <= lim.max_quantity:
        return _fail(where + "quantity", f"{quantity} is outside [1, {lim.max_quantity}]")
    price = line["unit_price"]
    if not _isfinite(price) or not 0 <= price <= lim.max_unit_price:
        return _fail(where + "unit_price", f"{price} is outside [0, {lim.max_unit_price}]")
    discount = line["discount"]
    if not _isfinite(discount) or not 0 <= discount <= price:
        return _fail(where + "discount", f"{discount} is outside [0, unit_price={price}]")
    try:
        _strings(line, lim.max_string_chars, where)
    except ValidationError as exc:
        return exc
    return ValidationError(f"lines[{i}]: invalid line")  # not reached: the fast check agrees


def _orders(r: Mapping[str, Any], lim: ValidationLimits) -> None:
    _ids(r, "order_id", "store_id")
    lines = r["lines"]
    if not 1 <= len(lines) <= lim.max_array_items:
        raise _fail("lines", f"{len(lines)} lines; expected 1..{lim.max_array_items}")
    max_q, max_p, max_s = lim.max_quantity, lim.max_unit_price, lim.max_string_chars
    for line in lines:
        # NaN fails every comparison, so the range checks below also refuse NaN; an
        # infinite price fails ``<= max_p``, an infinite discount ``<= price``.
        price = line["unit_price"]
        if (
            line.get("sku")
            and 0 < line["quantity"] <= max_q
            and 0 <= price <= max_p
            and 0 <= line["discount"] <= price
        ):
            for v in line.values():
                if isinstance(v, str) and len(v) > max_s:
                    raise _line_error(lines.index(line), line, lim)
            continue
        raise _line_error(lines.index(line), line, lim)


_PRODUCT_EVENTS = frozenset(
    {
        "PRODUCT_VIEW",
        "ADD_TO_CART",
        "REMOVE_FROM_CART",
        "RECOMMENDATION_IMPRESSION",
        "RECOMMENDATION_CLICK",
    }
)


def _clickstream(r: Mapping[str, Any], lim: ValidationLimits) -> None:
    if not (r.get("session_id") and r.get("anonymous_id")):
        _ids(r, "session_id", "anonymous_id")
    if r.get("event_type") in _PRODUCT_EVENTS and not r.get("sku"):
        raise _fail("sku", f"{r['event_type']} needs a sku")
    if r.get("quantity") is not None:
        _number(r, "quantity", 1, lim.max_quantity)
    if r.get("position") is not None:
        _number(r, "position", 0, lim.max_array_items)


def _supplier(r: Mapping[str, Any], lim: ValidationLimits) -> None:
    _ids(r, "supplier_id", "po_id", "sku", "store_id")
    _number(r, "quantity_ordered", 1, lim.max_supply_quantity)
    _number(r, "quantity", 0, lim.max_supply_quantity)
    _number(r, "delay_days", -365, 365)
    _time(r, "expected_date", lim)
    _time(r, "actual_date", lim)


def _catalog(r: Mapping[str, Any], lim: ValidationLimits) -> None:
    _ids(r, "sku", "category_id", "department_id")
    _number(r, "price", 0, lim.max_unit_price)
    _time(r, "launch_date", lim)


def _inventory(r: Mapping[str, Any], lim: ValidationLimits) -> None:
    _ids(r, "sku", "store_id")
    _number(r, "on_hand", 0, lim.max_supply_quantity)
    _number(r, "on_order", 0, lim.max_supply_quantity)


def _stores(r: Mapping[str, Any], lim: ValidationLimits) -> None:
    _ids(r, "store_id", "region_id")
    _number(r, "size_sqm", 0, 1e7)


_RULES: dict[str, Callable[[Mapping[str, Any], ValidationLimits], None]] = {
    "orders": _orders,
    "clickstream": _clickstream,
    "supplier": _supplier,
    "catalog": _catalog,
    "inventory": _inventory,
    "stores": _stores,
}


def validate(
    family: str, record: Mapping[str, Any], *, broker_time_ms: int | None, limits: ValidationLimits
) -> None:
    """Raise :class:`ValidationError` naming the first implausible field; return if fine.

    ``broker_time_ms`` is the Kafka message timestamp: the reference for "too far in the
    future" (never the wall clock, so a replay judges a record exactly as live did).
    """
    if not record.get("event_id"):
        raise _fail("event_id", "missing or empty id")
    event_time = record["event_time"]
    if event_time < limits.min_event_time_ms:
        raise _fail("event_time", f"{event_time} ms is before 2000-01-01 (min_event_time_ms)")
    if broker_time_ms is not None and event_time > broker_time_ms + limits.max_ahead_of_broker_ms:
        ahead_h = (event_time - broker_time_ms) / 3_600_000
        raise _fail("event_time", f"{ahead_h:.1f} h ahead of the broker timestamp")
    limit = limits.max_string_chars
    for value in record.values():
        if isinstance(value, str) and len(value) > limit:
            _strings(record, limit)  # names the field
    try:
        rule = _RULES[family]
    except KeyError:
        raise ValidationError(f"no validation rules for family {family!r}") from None
    rule(record, limits)
