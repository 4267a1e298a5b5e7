"""On-time, fill and incident rates per supplier over a sliding event-time window.

State is one small list of counters per event-time day over the last ``window_days``
(a 28-day window is at most 28 lists of 7 ints per supplier), so the rates slide without
keeping any individual PO. Days are UTC days of the outcome's event time.

>>> from processors.purchase_orders import POOutcome
>>> m = SupplierMetrics(window_days=7)
>>> day = 86_400_000
>>> m.add(POOutcome("receipt", "SUP1", "P1", "K", "S", day, lateness_days=0.0))
>>> m.add(POOutcome("receipt", "SUP1", "P2", "K", "S", day, lateness_days=2.0))
>>> m.add(POOutcome("closed", "SUP1", "P2", "K", "S", day, fill_rate=0.5))
>>> r = m.rates(2 * day)
>>> r["on_time_rate"], r["fill_rate"], r["receipts"]
(0.5, 0.5, 2)
>>> m.rates(9 * day)["receipts"]  # slid out of the window
0
"""

from __future__ import annotations

from processors.purchase_orders import DAY_MS, POOutcome

__all__ = ["SupplierMetrics"]

# Counter slots of one day.
_RECEIPTS, _ON_TIME, _CLOSED, _FILL_SUM, _INCIDENTS, _LATE, _DELAYS = range(7)


class SupplierMetrics:
    """Daily counters of one supplier; rates over the last ``window_days`` days."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    __slots__ = ("days", "on_time_grace_days", "window_days")

    def __init__(self, *, window_days: int = 28, on_time_grace_days: float = 0.0) -> None:
        self.window_days = window_days
        self.on_time_grace_days = on_time_grace_days
        self.days: dict[int, list[float]] = {}  # UTC day number -> counters

    def add(self, o: POOutcome) -> None:
        """Count one outcome in its event-time day."""
        day = o.t // DAY_MS
        row = self.days.get(day)
        if row is None:
            row = self.days[day] = [0.0] * 7
            self._trim(day)
        if o.kind == "receipt":
            row[_RECEIPTS] += 1
            if o.lateness_days is None or o.lateness_days <= self.on_time_grace_days:
                row[_ON_TIME] += 1
        elif o.kind == "closed" and o.fill_rate is not None:
            row[_CLOSED] += 1
            row[_FILL_SUM] += o.fill_rate
        elif o.kind == "incident":
            row[_INCIDENTS] += 1
        elif o.kind == "late":
            row[_LATE] += 1
        elif o.kind == "delay":
            row[_DELAYS] += 1

    def _trim(self, newest: int) -> None:
        oldest = newest - self.window_days
        for day in [d for d in self.days if d <= oldest]:
            del self.days[day]

    def rates(self, now_ms: int, window_days: int | None = None) -> dict[str, float]:
        """Rates over the ``window_days`` days up to ``now_ms`` (rates are 1/0 when empty).

        ``incident_rate`` is incidents per receipt; ``fill_rate`` is the mean over closed POs.
        """
        last = now_ms // DAY_MS
        first = last - (window_days or self.window_days) + 1
        tot = [0.0] * 7
        for day, row in self.days.items():
            if first <= day <= last:
                for i, v in enumerate(row):
                    tot[i] += v
        receipts = tot[_RECEIPTS]
        return {
            "receipts": int(receipts),
            "on_time_rate": round(tot[_ON_TIME] / receipts, 4) if receipts else 1.0,
            "fill_rate": round(tot[_FILL_SUM] / tot[_CLOSED], 4) if tot[_CLOSED] else 1.0,
            "incident_rate": round(tot[_INCIDENTS] / receipts, 4) if receipts else 0.0,
            "late_flags": int(tot[_LATE]),
            "delay_notices": int(tot[_DELAYS]),
        }

    def idle_since(self) -> int | None:
        """Newest day with activity (for evicting idle suppliers), None if none."""
        return max(self.days) if self.days else None
