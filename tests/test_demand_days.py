"""Day closing in event time: the demand rule, lateness, time zones, zero days."""

from __future__ import annotations

from typing import Any

import pytest

from processors.daily_demand import DAY_MS, DailyDemand, DayClock

HOUR = 3_600_000
D = 20_000  # an epoch day (2024-10-04)


def order(
    kind: str,
    t: int,
    order_id: str,
    qty: int,
    *,
    sku: str = "K1",
    store: str = "S1",
    discount: float = 0.0,
) -> dict[str, Any]:
    line = {
        "sku": sku,
        "quantity": qty,
        "unit_price": 10.0,
        "discount": discount,
        "promotion_id": None,
        "impression_id": None,
    }
    return {
        "event_type": kind,
        "event_time": t,
        "order_id": order_id,
        "store_id": store,
        "lines": [line],
    }


def test_placed_minus_cancelled_and_returned_on_the_order_day():
    book = DailyDemand(lateness_ms=HOUR)
    book.add_order(order("ORDER_PLACED", D * DAY_MS + 10 * HOUR, "O1", 5))
    book.add_order(order("ORDER_PLACED", D * DAY_MS + 11 * HOUR, "O2", 2, store="S2"))
    book.add_order(order("ORDER_RETURNED", (D + 1) * DAY_MS + 0 * HOUR + 1, "O1", 2))
    closed = book.advance((D + 1) * DAY_MS + HOUR)
    assert [c.day for c in closed] == [D]
    assert closed[0].units == {("K1", "S1"): 3.0, ("K1", "S2"): 2.0}


def test_a_return_after_its_order_day_closed_counts_on_its_own_day_and_clamps_at_zero():
    book = DailyDemand(lateness_ms=HOUR)
    book.add_order(order("ORDER_PLACED", D * DAY_MS + 10 * HOUR, "O1", 1))
    book.add_order(order("ORDER_PLACED", (D + 2) * DAY_MS, "O9", 1, sku="K9"))
    closed = book.advance()  # closes day D
    book.add_order(order("ORDER_RETURNED", (D + 2) * DAY_MS + HOUR, "O1", 1))
    closed += book.advance((D + 3) * DAY_MS + HOUR)
    assert [c.day for c in closed] == [D, D + 1, D + 2]
    assert closed[0].units == {("K1", "S1"): 1.0}
    assert closed[1].units == {}  # a day without events still closes, with zeros
    assert closed[2].units == {("K9", "S1"): 1.0}  # K1's -1 is clamped away
    assert book.late_events == 0


def test_late_events_within_lateness_correct_their_day():
    book = DailyDemand(lateness_ms=2 * HOUR)
    book.add_order(order("ORDER_PLACED", D * DAY_MS + 23 * HOUR, "O1", 1))
    book.add_order(order("ORDER_PLACED", (D + 1) * DAY_MS + HOUR, "O2", 1))  # watermark moves on
    assert book.advance() == []  # day D waits for its lateness
    book.add_order(order("ORDER_PLACED", D * DAY_MS + 22 * HOUR, "O3", 4))  # late but allowed
    closed = book.advance((D + 1) * DAY_MS + 2 * HOUR)
    assert closed[0].units == {("K1", "S1"): 5.0}
    book.add_order(order("ORDER_PLACED", D * DAY_MS + 21 * HOUR, "O4", 7))  # too late
    assert (book.late_events, book.late_units) == (1, 7.0)
    book.add_order(
        order("ORDER_CANCELLED", (D + 1) * DAY_MS + 3 * HOUR, "O3", 4)
    )  # O3's day closed
    assert book.late_events == 1  # attributed to its own (open) day instead
    closed = book.advance((D + 2) * DAY_MS + 2 * HOUR)
    assert closed[0].units == {("K1", "S1"): 1.0} or closed[0].units == {}


def test_promotion_units_views_and_carts_are_counted_per_day():
    book = DailyDemand(lateness_ms=0)
    book.add_order(order("ORDER_PLACED", D * DAY_MS + HOUR, "O1", 3, discount=1.0))
    click = {"event_type": "PRODUCT_VIEW", "event_time": D * DAY_MS + HOUR, "sku": "K1"}
    book.add_click(click)
    book.add_click({**click, "event_type": "ADD_TO_CART"})
    book.add_click({**click, "event_type": "SEARCH"})
    (day,) = book.advance((D + 1) * DAY_MS)
    assert day.promo_units == {("K1", "S1"): 3.0}
    assert day.views == {"K1": 1.0} and day.carts == {"K1": 1.0}


def test_days_are_cut_in_the_retailer_time_zone():
    clock = DayClock("America/New_York")
    evening = D * DAY_MS + 2 * HOUR  # 22:00 the previous day in New York (EDT)
    assert clock.day_of(evening) == D - 1
    assert clock.end_ms(D - 1) == D * DAY_MS + 4 * HOUR
    book = DailyDemand(timezone="America/New_York", lateness_ms=0)
    book.add_order(order("ORDER_PLACED", evening, "O1", 1))
    assert book.advance(D * DAY_MS + 3 * HOUR) == []
    (day,) = book.advance(D * DAY_MS + 4 * HOUR)
    assert day.day == D - 1 and day.start_ms == (D - 1) * DAY_MS + 4 * HOUR


def test_dst_days_have_23_and_25_hours():
    clock = DayClock("Europe/Paris")
    from datetime import date

    from processors.calendar_features import epoch_day

    spring, autumn = epoch_day(date(2024, 3, 31)), epoch_day(date(2024, 10, 27))
    assert clock.end_ms(spring) - clock.start_ms(spring) == 23 * HOUR
    assert clock.end_ms(autumn) - clock.start_ms(autumn) == 25 * HOUR


def test_unknown_event_types_are_ignored_and_state_is_bounded():
    book = DailyDemand(lateness_ms=0)
    book.add_order(order("UNKNOWN", D * DAY_MS, "O1", 1))
    for k in range(50):
        book.add_order(order("ORDER_PLACED", (D + k) * DAY_MS + HOUR, f"O{k}", 1))
        book.advance()
    assert len(book.open) <= 2 and len(book.placed_day) <= 2


# -- the per-day actuals history the engine publishes for the dashboard ------------------


def _engine_days(n_days: int) -> tuple[Any, list[Any]]:
    from processors.demand_engine import DemandEngine, DemandSettings
    from processors.records import Event

    def ev(family: str, value: dict[str, Any], t: int) -> Event:
        return Event(family, None, {**value, "event_time": t}, t, 1, family, 0, 0)

    t0 = D * DAY_MS
    eng = DemandEngine(DemandSettings(horizon_days=7, scored_horizons=(1, 7)))
    eng.on_event(ev("stores", {"store_id": "S1", "region_id": "R1", "size_sqm": 900.0}, t0))
    catalog = {"event_type": "SKU_CREATED", "sku": "K1", "category_id": "C1",
               "department_id": "D1", "price": 5.0, "launch_date": None}  # fmt: skip
    eng.on_event(ev("catalog", catalog, t0))
    line = {"sku": "K1", "quantity": 3, "unit_price": 5.0, "discount": 0.0}
    writes = []
    for d in range(n_days + 1):
        placed = {"event_type": "ORDER_PLACED", "order_id": f"O{d}", "store_id": "S1",
                  "lines": [line]}  # fmt: skip
        writes += eng.on_event(ev("orders", placed, t0 + d * DAY_MS + 12 * HOUR))
    return eng, writes


def test_each_closed_day_is_stored_once_per_level_for_the_dashboard():
    import json

    from processors.demand_engine import HISTORY_TTL_MS
    from processors.reconcile import LEVELS
    from processors.writes import HashWrite, ZSetWrite

    eng, writes = _engine_days(4)
    days = [w for w in writes if isinstance(w, HashWrite) and w.kind == "demand_day"]
    index = [w for w in writes if isinstance(w, ZSetWrite)]
    starts = [(D + d) * DAY_MS for d in range(4)]
    assert [(w.kind, w.entity, w.member, w.score) for w in index] == [
        row
        for t in starts
        for row in (
            ("demand_days", "index", str(t), t),
            ("demand_days", "index", str(t - HISTORY_TTL_MS), None),  # expired day leaves
        )
    ]
    assert len(days) == 4 * len(LEVELS)  # one hash per level and day, whatever the series
    assert {w.entity for w in days} == {f"{lv}:{t}" for lv in LEVELS for t in starts}
    last = {w.entity: w for w in days if w.version == starts[-1]}
    bottom = last[f"sku_store:{starts[-1]}"]
    assert bottom.ttl_ms == HISTORY_TTL_MS and bottom.channel is None
    actual, mean, p10, p50, p90 = json.loads(bottom.fields["K1:S1"])
    assert actual == 3.0
    assert p10 <= p50 <= p90 and mean > 0
    # the next-day forecast is the forecast hash's first column, the actual its last day
    fc = next(w for w in writes if w.kind == "forecast" and w.entity == "total:all"
              and w.version == starts[-1])  # fmt: skip
    assert json.loads(last[f"total:{starts[-1]}"].fields["all"]) == [
        fc.fields["actual_last_day"], *(json.loads(fc.fields[k])[0] for k in
                                        ("mean", "p10", "p50", "p90"))
    ]  # fmt: skip
    assert eng.days_closed == 4


@pytest.mark.integration
def test_the_dashboard_reads_the_stored_days_back(settings: Any, redis_client: Any):
    from infra.redis_sink import RedisWriter
    from streams.dashboard.queries import DashboardReader

    _, writes = _engine_days(3)
    writer = RedisWriter(settings.redis.require_url(), prefix=settings.redis.key_prefix)
    try:
        writer.write(writes)
    finally:
        writer.close()
    reader = DashboardReader(redis_client, settings.redis.key_prefix)
    points = reader.stored_history("sku_store", "K1:S1")
    assert [p["as_of"] for p in points] == [(D + d) * DAY_MS for d in range(3)]
    assert [p["actual"] for p in points] == [3.0, 3.0, 3.0]
    assert all(p["p10"] <= p["p50"] <= p["p90"] for p in points)
    assert len(reader.stored_history("total", "all")) == 3
