"""The dashboard's in-memory state: plain data, no I/O, every collection capped.

The server keeps three things between Redis reads, all fed by pub/sub notifications and
seeded from Redis at start:

- :class:`AlertBook`: the supply alert stream folded to one row per alert (open/closed,
  newest severity, impacted SKUs), so the page never replays the stream itself;
- :class:`SeriesHistory`: actuals and one-day-ahead forecasts per demand series, because
  the forecast hashes hold only the newest day (``actual_last_day``) and no key keeps
  actuals over time;
- :class:`RateMeter`: events per second per family from successive absolute counts (the
  flows write totals, not rates, so rates are differences taken here, on the wall clock of
  the dashboard, which is an edge of the system).
"""

from __future__ import annotations

import json
import math
from array import array
from collections import OrderedDict, deque
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import holidays

from processors.calendar_features import retail_event

__all__ = [
    "AlertBook",
    "RateMeter",
    "SeriesHistory",
    "calendar_marks",
    "entry_key",
    "forecast_fields",
    "loads_list",
]


def entry_key(entry_id: str) -> tuple[int, int]:
    """Stream entry id -> sortable ``(ms, seq)``.

    >>> entry_key("1736899140000-3") < entry_key("1736899140000-10")
    True
    """
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def loads_list(raw: Any) -> list[Any]:
    """A JSON list field (bytes, str or already a list) -> list; bad or missing -> [].

    >>> loads_list('["SKU1", "SKU2"]'), loads_list(None), loads_list("not json")
    (['SKU1', 'SKU2'], [], [])
    """
    if isinstance(raw, list):
        return raw
    if raw is None:
        return []
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return []
    return value if isinstance(value, list) else []


def _float(raw: Any, default: float = 0.0) -> float:
    """A finite float, else ``default`` (JSON has no NaN, and the page must parse it)."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def forecast_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A forecast hash (or its notification) -> typed fields.

    >>> f = forecast_fields({"mean": "[1.5, 2.0]", "p10": "[1, 1]", "as_of": "86400000",
    ...                      "actual_last_day": "3.0", "model_version": "4"})
    >>> f["mean"], f["p90"], f["as_of"], f["actual_last_day"]
    ([1.5, 2.0], [], 86400000, 3.0)
    """
    return {
        "mean": [_float(v) for v in loads_list(fields.get("mean"))],
        "p10": [_float(v) for v in loads_list(fields.get("p10"))],
        "p50": [_float(v) for v in loads_list(fields.get("p50"))],
        "p90": [_float(v) for v in loads_list(fields.get("p90"))],
        "as_of": int(_float(fields.get("as_of"), -1)),
        "actual_last_day": _float(fields.get("actual_last_day")),
        "model_version": int(_float(fields.get("model_version"))),
    }


class AlertBook:
    """Supply alert entries folded to one row per ``alert_id``, newest entry wins.

    Stream status ``open`` and ``update`` both mean the alert is open; ``closed`` closes
    it. Entries older than the newest one applied to an alert are ignored, so seeding from
    ``XREVRANGE`` and applying pub/sub notifications can overlap safely.

    >>> book = AlertBook(max_alerts=2)
    >>> row = book.apply("10-0", {"alert_id": "A", "status": "open", "supplier_id": "S1",
    ...                           "severity": "low", "affected_skus": '["K1"]'})
    >>> row["state"], row["affected_skus"]
    ('open', ['K1'])
    >>> book.apply("11-0", {"alert_id": "A", "status": "closed", "severity": "high"})["state"]
    'closed'
    >>> book.apply("10-5", {"alert_id": "A", "status": "update"}) is None  # older: ignored
    True
    >>> _ = book.apply("12-0", {"alert_id": "B", "status": "open"})
    >>> _ = book.apply("13-0", {"alert_id": "C", "status": "open"})
    >>> [r["alert_id"] for r in book.rows()]  # capped: the least recently changed went
    ['C', 'B']
    """

    def __init__(self, max_alerts: int = 500) -> None:
        self.max_alerts = max_alerts
        self._rows: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def apply(self, entry_id: str, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        """Fold one stream entry; return the alert's new row, or None if it was stale."""
        alert_id = str(fields.get("alert_id") or "")
        if not alert_id:
            return None
        row = self._rows.get(alert_id)
        if row is not None and entry_key(entry_id) <= entry_key(row["last_id"]):
            return None
        status = str(fields.get("status") or "open")
        new = {
            "alert_id": alert_id,
            "state": "closed" if status == "closed" else "open",
            "status": status,
            "supplier_id": str(fields.get("supplier_id") or ""),
            "severity": str(fields.get("severity") or ""),
            "score": _float(fields.get("score")),
            "affected_skus": loads_list(fields.get("affected_skus")),
            "affected_stores": loads_list(fields.get("affected_stores")),
            "impacted_pairs": loads_list(fields.get("impacted_pairs")),
            "opened_at": int(_float(fields.get("opened_at"), -1)),
            "updated_at": int(_float(fields.get("updated_at"), -1)),
            "entries": (row["entries"] if row else 0) + 1,
            "last_id": entry_id,
        }
        self._rows[alert_id] = new
        self._rows.move_to_end(alert_id)
        while len(self._rows) > self.max_alerts:
            self._rows.popitem(last=False)
        return new

    def rows(self) -> list[dict[str, Any]]:
        """Newest change first."""
        return list(reversed(self._rows.values()))

    def __len__(self) -> int:
        return len(self._rows)


_FIELDS = ("as_of", "actual", "mean", "p10", "p50", "p90")
_W = len(_FIELDS)


class SeriesHistory:
    """Per demand series (``<level>:<node>``), a capped list of daily points.

    A point is the closed day ``as_of`` with its actual units, and the forecast made at
    that close for the next day (mean and the p10/p50/p90 band). Points are packed in one
    array of doubles per series (48 bytes a point, so 2,000 series x 400 days stay under
    40 MB; a dict per point costs ~440 bytes); series are kept in least-recently-updated
    order and the oldest is dropped past ``max_series``.

    >>> h = SeriesHistory(max_series=2, max_points=2)
    >>> for day in (1, 2, 3):
    ...     h.record("total:all", {"as_of": day, "actual_last_day": 10.0 * day,
    ...              "mean": [1.0], "p10": [0.5], "p50": [1.0], "p90": [2.0]})
    >>> [p["as_of"] for p in h.points("total:all")]
    [2, 3]
    >>> h.record("total:all", {"as_of": 3, "actual_last_day": 31.0, "mean": [1.0]})
    >>> h.points("total:all")[-1]  # a republished day replaces its point
    {'as_of': 3, 'actual': 31.0, 'mean': 1.0, 'p10': None, 'p50': None, 'p90': None}
    """

    def __init__(self, max_series: int = 2000, max_points: int = 400) -> None:
        self.max_series = max_series
        self.max_points = max_points
        self._series: OrderedDict[str, array[float]] = OrderedDict()

    def record(self, series: str, fc: Mapping[str, Any]) -> None:
        """Add the newest closed day of a forecast hash (or its notification)."""
        as_of = int(fc.get("as_of", -1))
        if as_of < 0:
            return
        first = [(fc.get(q) or [None])[0] for q in _FIELDS[2:]]
        point = {"as_of": as_of, "actual": float(fc.get("actual_last_day", 0.0))}
        point.update(zip(_FIELDS[2:], first, strict=True))
        packed = self._series.get(series)
        last = int(packed[-_W]) if packed else -1
        if packed is not None and last == as_of:
            packed[-_W:] = array("d", _pack(point))
        elif packed is not None and last < as_of:
            packed.extend(_pack(point))
            del packed[: max(0, len(packed) - self.max_points * _W)]
        else:  # a first point, or an older day (a seed after live points)
            self.merge(series, [point])
            return
        self._series.move_to_end(series)

    def merge(self, series: str, stored: list[dict[str, Any]]) -> None:
        """Add points read back from Redis (any order); points seen live win on a tie.

        >>> h = SeriesHistory(max_points=3)
        >>> h.record("s", {"as_of": 5, "actual_last_day": 5.0, "mean": [1.0]})
        >>> h.merge("s", [{"as_of": d, "actual": 0.0} for d in (2, 3, 4, 5)])
        >>> [(p["as_of"], p["actual"]) for p in h.points("s")]
        [(3, 0.0), (4, 0.0), (5, 5.0)]
        """
        if not stored:
            return
        by_day = {int(p["as_of"]): p for p in stored}
        by_day.update({p["as_of"]: p for p in self.points(series)})
        packed: array[float] = array("d")
        for day in sorted(by_day)[-self.max_points :]:
            packed.extend(_pack(by_day[day]))
        self._series[series] = packed
        self._series.move_to_end(series)
        while len(self._series) > self.max_series:
            self._series.popitem(last=False)

    def points(self, series: str) -> list[dict[str, Any]]:
        packed = self._series.get(series)
        if not packed:
            return []
        out = []
        for i in range(0, len(packed), _W):
            row: dict[str, Any] = {"as_of": int(packed[i]), "actual": packed[i + 1]}
            for k, name in enumerate(_FIELDS[2:], start=2):
                value = packed[i + k]
                row[name] = None if math.isnan(value) else value
            out.append(row)
        return out

    def __len__(self) -> int:
        return len(self._series)


def _pack(point: Mapping[str, Any]) -> list[float]:
    """A point as doubles in ``_FIELDS`` order; a missing quantile is NaN."""
    values = [float(point["as_of"]), float(point.get("actual") or 0.0)]
    for name in _FIELDS[2:]:
        value = point.get(name)
        values.append(math.nan if value is None else float(value))
    return values


class RateMeter:
    """Events per second per family from absolute counts sampled on a monotonic clock.

    The rate is taken over the samples of the last ``window_s`` seconds, so one slow
    epoch does not show as a zero.

    >>> m = RateMeter(window_s=10)
    >>> m.update(0.0, {"orders": 100})
    {'orders': 0.0}
    >>> m.update(2.0, {"orders": 300})
    {'orders': 100.0}
    >>> m.update(4.0, {"orders": 50})["orders"]  # counts went down (a new run): restart
    0.0
    """

    def __init__(self, window_s: float = 5.0, max_samples: int = 120) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, dict[str, int]]] = deque(maxlen=max_samples)

    def update(self, now: float, counts: Mapping[str, int]) -> dict[str, float]:
        if self._samples and any(counts.get(f, 0) < n for f, n in self._samples[-1][1].items()):
            self._samples.clear()
        self._samples.append((now, dict(counts)))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        t0, first = self._samples[0]
        span = now - t0
        return {
            family: round((n - first.get(family, n)) / span, 2) if span > 0 else 0.0
            for family, n in counts.items()
        }


def calendar_marks(start_ms: int, end_ms: int, country: str = "US") -> list[dict[str, str]]:
    """Public holidays and retail events (Black Friday, Christmas week...) between two
    instants, one mark per day, so the page can show why a day spikes. At most 400 days.

    >>> [m["name"] for m in calendar_marks(1732752000000, 1732924800000)]
    ['Thanksgiving Day', 'black_friday', 'bf_weekend']
    """
    first = datetime.fromtimestamp(start_ms / 1000, UTC).date()
    last = min(datetime.fromtimestamp(end_ms / 1000, UTC).date(), first + timedelta(days=400))
    public: Mapping[date, Any]
    try:
        public = holidays.country_holidays(country, years=range(first.year, last.year + 1))
    except NotImplementedError:  # a country the holidays package does not know
        public = {}
    marks = []
    day: date = first
    while day <= last:
        name = public.get(day) or retail_event(day)
        if name:
            marks.append({"date": day.isoformat(), "name": str(name)})
        day += timedelta(days=1)
    return marks
