"""Days of cover per SKU x store, and which pairs an open supply alert puts at risk.

Days of cover = units on hand / expected daily demand. Expected daily demand is the demand
flow's forecast for the pair (the mean over the next week) once one has been published;
before that (a new pair, or the demand flow not running) it is an event-time EWMA of the
units sold per UTC day (days with no sale count as zeros). Inventory snapshots are sparse
(a full count every few weeks), so on hand is the last snapshot minus the units sold since.

:class:`CoverTracker` is the per-pair state (a few numbers); it emits a :class:`Cover` at
most once per pair per event-time day (on the pair's first event of a new day, and on
every snapshot), which keeps the stream into the supply state small.
:func:`impacted_pairs` picks, among an alert's SKU x store pairs, those whose days of cover
fall below the predicted delay.

>>> day = 86_400_000
>>> c = CoverTracker()
>>> c.on_snapshot(100, 0) is not None
True
>>> for d in range(10):
...     _ = c.on_sale(10, d * day + 3_600_000)
>>> cov = c.cover(10 * day)
>>> cov.on_hand, cov.daily_demand > 5
(0, True)
>>> c.on_forecast(2.0, 10 * day).days_of_cover  # the forecast, once there, wins
0.0
>>> impacted_pairs({("K", "S"): (2.0, 10 * day)}, {("K", "S"): 5.0, ("K", "T"): 9.0})
[('K', 'S', 2.0, 5.0)]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from processors.purchase_orders import DAY_MS

__all__ = ["Cover", "CoverTracker", "StoreCover", "StoreMoves", "impacted_pairs"]


class Cover(NamedTuple):
    """Estimated stock position of one pair at event time ``t``.

    A NamedTuple: ~100k are made in the 30-day e2e benchmark run, and they cross from the
    cover shards to the supply engine's worker as plain tuples (``CoverPacket``,
    streams/flows/packets.py).

    >>> import pickle
    >>> c = Cover(12, 1.5, 8.0, 86_400_000)
    >>> pickle.loads(pickle.dumps(c)) == c
    True
    """

    on_hand: int
    daily_demand: float
    days_of_cover: float
    t: int

    def __reduce__(self) -> tuple[type[Cover], tuple[int, float, float, int]]:
        # The form older snapshots hold (Cover(*fields)), cheaper than a NamedTuple's
        # default through copyreg.__newobj__.
        return (Cover, (self.on_hand, self.daily_demand, self.days_of_cover, self.t))


class CoverTracker:
    """On hand (last snapshot - sold since) and an EWMA of daily units sold, for one pair."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    __slots__ = (
        "alpha", "day", "day_units", "days_seen", "ewma", "forecast", "on_hand", "sold_since",
    )  # fmt: skip

    def __init__(self, *, alpha: float = 0.1) -> None:
        self.alpha = alpha  # weight of the newest day (~ a 10-day memory)
        self.day = -1  # current UTC day number, -1 before the first event
        self.day_units = 0.0
        self.ewma = 0.0
        self.days_seen = 0
        self.on_hand: int | None = None  # None until the first snapshot
        self.sold_since = 0
        self.forecast: float | None = None  # units/day from the demand flow, when published

    def _roll(self, t: int) -> bool:
        """Fold finished days into the EWMA; True when ``t`` starts a new day."""
        day = t // DAY_MS
        if self.day < 0:
            self.day = day
            return True
        if day <= self.day:
            return False
        gap = day - self.day  # the finished day, then gap - 1 days without a sale
        a = self.alpha if self.days_seen else 1.0  # the first day seeds the average
        self.ewma += a * (self.day_units - self.ewma)
        self.ewma *= (1.0 - self.alpha) ** (gap - 1)
        self.days_seen += gap
        self.day, self.day_units = day, 0.0
        return True

    def on_sale(self, units: int, t: int) -> Cover | None:
        """Units sold (negative: cancelled) at ``t``; a Cover when a new day starts."""
        new_day = self._roll(t)
        self.day_units += units
        self.sold_since += units
        return self.cover(t) if new_day and self.on_hand is not None else None

    def on_snapshot(self, on_hand: int, t: int) -> Cover:
        self._roll(t)
        self.on_hand, self.sold_since = on_hand, 0
        return self.cover(t)

    def on_forecast(self, daily: float, t: int) -> Cover | None:
        """The demand flow's expected units per day for this pair; a Cover if stock is known."""
        self._roll(t)
        self.forecast = max(0.0, daily)
        return self.cover(t) if self.on_hand is not None else None

    def demand(self) -> float:
        """Expected units per day: the forecast, else the sales EWMA (running day excluded)."""
        if self.forecast is not None:
            return self.forecast
        if not self.days_seen:
            return self.day_units  # one partial day: the best we have
        return self.ewma

    def cover(self, t: int) -> Cover:
        on_hand = max(0, (self.on_hand or 0) - self.sold_since)
        demand = self.demand()
        days = on_hand / demand if demand > 1e-6 else 999.0
        return Cover(on_hand, round(demand, 4), round(min(days, 999.0), 2), t)


def impacted_pairs(
    covers: Mapping[tuple[str, str], tuple[float, int]],
    delays: Mapping[tuple[str, str], float],
) -> list[tuple[str, str, float, float]]:
    """(sku, store, days of cover, delay) of the pairs whose cover < their predicted delay.

    ``covers`` maps (sku, store) -> (days of cover, as-of ms), ``delays`` (sku, store) ->
    predicted days until replenishment arrives. Pairs without a known stock position are
    left out (no evidence either way). Worst (least cover) first.
    """
    out = []
    for (sku, store), delay in delays.items():
        known = covers.get((sku, store))
        if known is not None and known[0] < delay:
            out.append((sku, store, known[0], round(delay, 2)))
    return sorted(out, key=lambda p: (p[2], p[0], p[1]))


class StoreMoves(NamedTuple):
    """Stock moves of one store: ``(kind, sku, units, event_time)``, kind snap/sale/forecast."""

    store: str
    moves: list[tuple[str, str, float, int]]


class StoreCover:
    """Days of cover of one store's SKUs. A SKU's tracker idle for ``idle_days`` (no sale,
    snapshot or forecast; event time, the store's newest day) is dropped once a day: a
    discontinued pair's state does not stay forever, and one that moves again starts afresh
    (its stock unknown until a snapshot)."""

    __slots__ = ("newest", "trackers")

    def __init__(self, trackers: dict[str, CoverTracker]) -> None:
        self.trackers = trackers
        # The store's newest UTC day: derived from the trackers, so the snapshot is unchanged.
        self.newest = max((tr.day for tr in trackers.values()), default=-1)

    def apply(
        self, moves: list[tuple[str, str, float, int]], alpha: float, idle_days: int
    ) -> list[tuple[str, Cover]]:
        covers: list[tuple[str, Cover]] = []
        for kind, sku, units, t in moves:
            tr = self.trackers.get(sku)
            if tr is None:
                tr = self.trackers[sku] = CoverTracker(alpha=alpha)
            cover: Cover | None
            if kind == "snap":
                cover = tr.on_snapshot(int(units), t)
            elif kind == "forecast":
                cover = tr.on_forecast(units, t)
            else:
                cover = tr.on_sale(int(units), t)
            if cover is not None:
                covers.append((sku, cover))
            if tr.day > self.newest:
                self.newest = tr.day
                if idle_days > 0:
                    oldest = self.newest - idle_days
                    for stale in [k for k, v in self.trackers.items() if v.day < oldest]:
                        del self.trackers[stale]
        return covers
