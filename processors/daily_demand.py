"""Event-time daily demand per SKU x store from order events, with allowed lateness.

The demand rule (docs/demand.md):

- ``ORDER_PLACED`` lines add their units to the (SKU, store) of the day the order was placed;
- ``ORDER_CANCELLED`` and ``ORDER_RETURNED`` lines subtract their units from the day of the
  original order when that day is still open (the placement was seen and its day has not
  closed), else from the day of the cancellation or return itself;
- a closed day's net demand per series is clamped at zero (a day of returns is a day
  without demand, not negative demand).

Days are cut in the retailer's time zone. Day ``d`` closes when the watermark (the largest
event time seen) passes the end of ``d`` plus the allowed lateness; it then closes for every
series at once, so series without sales get a zero, which is what intermittent demand
needs. An event whose day has already closed is *late*: it is counted (events and units)
and reported, not applied, so a closed day never changes.

Product views and add-to-carts (clickstream, per SKU) are counted per day the same way; they
are leading signals for the forecaster.

>>> book = DailyDemand(timezone="UTC", lateness_ms=3_600_000)
>>> D = 86_400_000
>>> book.add_order(_o("ORDER_PLACED", 10 * D + 5, "O1", 3))
>>> book.add_order(_o("ORDER_CANCELLED", 11 * D + 5, "O1", 1))  # day 10 still open
>>> [c.day for c in book.advance(11 * D + 3_600_000)]
[10]
>>> book.closed[0].units
{('K1', 'S1'): 2.0}
>>> book.add_order(_o("ORDER_PLACED", 10 * D + 9, "O2", 5))  # day 10 has closed: late
>>> book.late_events, book.late_units
(1, 5.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["ClosedDay", "DailyDemand", "DayClock"]

DAY_MS = 86_400_000
_SIGN = {"ORDER_PLACED": 1.0, "ORDER_CANCELLED": -1.0, "ORDER_RETURNED": -1.0}

Series = tuple[str, str]  # (sku, store_id)


class DayClock:
    """Maps epoch ms to local day numbers (days since 1970-01-01 in the time zone) and back.

    >>> c = DayClock("America/New_York")
    >>> c.day_of(86_400_000 * 20_000 + 3 * 3_600_000) == 20_000 - 1  # 03:00 UTC = evening
    True
    >>> c.start_ms(20_000) - 86_400_000 * 20_000
    14400000
    """

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(self, timezone: str = "UTC") -> None:
        self.timezone = timezone
        self._utc = timezone in ("UTC", "Etc/UTC")
        self._zone = ZoneInfo(timezone)
        self._starts: dict[int, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"timezone": self.timezone}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["timezone"])  # type: ignore[misc]

    def day_of(self, ms: int) -> int:
        if self._utc:
            return ms // DAY_MS
        local = datetime.fromtimestamp(ms / 1000.0, self._zone)
        return local.toordinal() - 719_163  # date(1970, 1, 1).toordinal()

    def start_ms(self, day: int) -> int:
        """Epoch ms of local midnight starting ``day`` (DST-aware)."""
        if self._utc:
            return day * DAY_MS
        start = self._starts.get(day)
        if start is None:
            midnight = datetime.fromordinal(day + 719_163).replace(tzinfo=self._zone)
            start = int(midnight.timestamp() * 1000)
            if len(self._starts) > 1024:
                self._starts.clear()
            self._starts[day] = start
        return start

    def end_ms(self, day: int) -> int:
        return self.start_ms(day + 1)


@dataclass
class ClosedDay:
    """Everything counted for one closed day (units are net and clamped at zero)."""

    day: int
    start_ms: int
    units: dict[Series, float]
    promo_units: dict[Series, float]  # units sold with a discount (promotion feature)
    views: dict[str, float]  # product views per SKU
    carts: dict[str, float]  # add-to-cart events per SKU
    prices: dict[str, float]  # last unit price paid per SKU (before discount)


@dataclass
class _OpenDay:
    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    units: dict[Series, float] = field(default_factory=dict)
    promo_units: dict[Series, float] = field(default_factory=dict)
    views: dict[str, float] = field(default_factory=dict)
    carts: dict[str, float] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    orders: list[str] = field(default_factory=list)  # placements, forgotten when the day closes


class DailyDemand:
    """Open days of demand; :meth:`advance` closes the days the watermark has passed."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(self, *, timezone: str = "UTC", lateness_ms: int = 3_600_000) -> None:
        self.clock = DayClock(timezone)
        self.lateness_ms = lateness_ms
        self.watermark = -1
        self.newest = -1  # newest event time seen; the watermark itself may lag it
        self.next_day: int | None = None  # first day not closed yet
        self.open: dict[int, _OpenDay] = {}
        self.placed_day: dict[str, int] = {}  # order id -> day, for orders of open days
        self.closed: list[ClosedDay] = []  # filled by advance(), drained by the caller
        self.late_events = 0
        self.late_units = 0.0
        self.bad_events = 0

    def _day(self, day: int) -> _OpenDay | None:
        """The open day ``day`` (created on demand), or None when it has already closed."""
        if self.next_day is None or (day < self.next_day and self.watermark < 0):
            # Until the first day closes, an earlier day can still arrive (another partition
            # may be read behind the first one seen): start from the earliest.
            self.next_day = day
        if day < self.next_day:
            return None
        book = self.open.get(day)
        if book is None:
            book = self.open[day] = _OpenDay()
        return book

    def add_order(self, value: Mapping[str, Any]) -> None:
        """Apply one order event (a dict shaped like ``orders.v1``)."""
        sign = _SIGN.get(value["event_type"])
        if sign is None:
            return  # UNKNOWN event types carry no demand we can interpret
        t = int(value["event_time"])
        own_day = self.clock.day_of(t)
        order_id = value["order_id"]
        target = own_day
        if sign < 0:
            original = self.placed_day.get(order_id)
            if original is not None:
                target = original
        book = self._day(target)
        lines = value["lines"]
        if book is None:
            self.late_events += 1
            self.late_units += sum(float(line["quantity"]) for line in lines)
            return
        store = value["store_id"]
        if sign > 0:
            self.placed_day[order_id] = target
            book.orders.append(order_id)
        for line in lines:
            key = (line["sku"], store)
            qty = sign * float(line["quantity"])
            book.units[key] = book.units.get(key, 0.0) + qty
            if line.get("discount") and sign > 0:
                book.promo_units[key] = book.promo_units.get(key, 0.0) + qty
            if sign > 0:
                book.prices[line["sku"]] = float(line["unit_price"])
        self._seen(t)

    def add_click(self, value: Mapping[str, Any]) -> None:
        """Count a product view or add-to-cart (other clickstream events are ignored)."""
        kind = value["event_type"]
        sku = value.get("sku")
        if sku is None or kind not in ("PRODUCT_VIEW", "ADD_TO_CART"):
            return
        t = int(value["event_time"])
        book = self._day(self.clock.day_of(t))
        if book is None:
            return  # a late click is not worth a counter: it is only a leading signal
        counts = book.views if kind == "PRODUCT_VIEW" else book.carts
        counts[sku] = counts.get(sku, 0.0) + 1.0
        self._seen(t)

    def _seen(self, t: int) -> None:
        if t > self.newest:
            self.newest = t

    def advance(self, watermark: int | None = None) -> list[ClosedDay]:
        """Close every day whose end plus lateness the watermark has passed; returns them.

        Days without any event close too (with no units): every series gets its zero.
        """
        # A caller reading several partitions passes its own (slower) watermark; alone, the
        # newest event time seen is the watermark.
        target = self.newest if watermark is None else watermark
        if target > self.watermark:
            self.watermark = target
        out: list[ClosedDay] = []
        if self.next_day is None:
            return out
        while self.clock.end_ms(self.next_day) + self.lateness_ms <= self.watermark:
            day = self.next_day
            book = self.open.pop(day, None) or _OpenDay()
            for order_id in book.orders:
                self.placed_day.pop(order_id, None)
            units = {k: v for k, v in book.units.items() if v > 0.0}
            out.append(
                ClosedDay(
                    day,
                    self.clock.start_ms(day),
                    units,
                    book.promo_units,
                    book.views,
                    book.carts,
                    book.prices,
                )
            )
            self.next_day = day + 1
        self.closed.extend(out)
        return out


def _o(kind: str, t: int, order_id: str, qty: int) -> dict[str, Any]:
    """A minimal order event (doctest helper)."""
    line = {"sku": "K1", "quantity": qty, "unit_price": 1.0, "discount": 0.0}
    return {
        "event_type": kind,
        "event_time": t,
        "order_id": order_id,
        "store_id": "S1",
        "lines": [line],
    }
