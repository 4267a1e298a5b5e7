"""Validation: implausible values are refused, naming the field."""

from __future__ import annotations

import pytest

from processors.validation import ValidationLimits, validate
from streams.errors import ValidationError
from tests.helpers import T0, click, order, store

LIMITS = ValidationLimits()


def line(**over):
    base = order()["lines"][0]
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("family", "record", "field"),
    [
        ("orders", order(lines=[line(unit_price=float("nan"))]), "unit_price"),
        ("orders", order(lines=[line(unit_price=float("inf"))]), "unit_price"),
        ("orders", order(lines=[line(quantity=0)]), "quantity"),
        ("orders", order(lines=[line(quantity=-3)]), "quantity"),
        ("orders", order(lines=[line(quantity=10**9)]), "quantity"),
        ("orders", order(lines=[line(unit_price=1e12)]), "unit_price"),
        ("orders", order(lines=[line(discount=50.0)]), "discount"),
        ("orders", order(lines=[]), "lines"),
        ("orders", order(lines=[line()] * 1001), "lines"),
        ("orders", order(order_id=""), "order_id"),
        ("orders", order(event_id=""), "event_id"),
        ("orders", order(event_time=0), "event_time"),
        ("orders", order(event_time=T0 + 3 * 86_400_000), "event_time"),
        ("orders", order(store_id="x" * 5000), "store_id"),
        ("clickstream", click(sku=None), "sku"),
        ("clickstream", click(anonymous_id=""), "anonymous_id"),
        ("stores", store(size_sqm=float("-inf")), "size_sqm"),
    ],
)
def test_implausible_values_name_the_field(family, record, field):
    with pytest.raises(ValidationError, match=field):
        validate(family, record, broker_time_ms=T0 + 60_000, limits=LIMITS)


def test_plausible_records_pass_and_inputs_are_unchanged():
    record = order()
    before = repr(record)
    validate("orders", record, broker_time_ms=T0, limits=LIMITS)
    validate(
        "clickstream", click(event_type="SEARCH", sku=None), broker_time_ms=None, limits=LIMITS
    )
    assert repr(record) == before


def test_future_check_uses_broker_time_not_wall_clock():
    # Ten years "ahead" of today is fine if the broker stamped it then (a replayed archive).
    far = T0 + 10 * 365 * 86_400_000
    validate("orders", order(event_time=far), broker_time_ms=far, limits=LIMITS)
