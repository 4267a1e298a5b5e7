"""Every Redis read the dashboard makes, and nothing that writes.

Only read commands are sent (HGETALL, ZREVRANGE, XREVRANGE, SCAN, SUBSCRIBE through
:meth:`DashboardReader.pubsub`), so the dashboard runs under the read-only ACL user of
docs/redis.md. Key and channel names come from :func:`infra.redis_sink.redis_key` and
:func:`infra.redis_sink.channel_name`, the same functions the writers use. SCANs are
bounded (``scan_limit``): a Redis with millions of series must not stall a page load.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import redis

from infra.cluster import RedisClient
from infra.redis_sink import channel_name, redis_key
from processors.reconcile import LEVELS
from streams.dashboard.state import forecast_fields, loads_list
from streams.errors import InfraError
from streams.metrics import ingest_snapshot

__all__ = ["CHANNELS", "DashboardReader", "decoded", "parse_series"]

# Pub/sub channels the flows publish on (docs/redis.md), by the name the page uses.
CHANNELS: dict[str, str] = {
    "forecast": "forecast.changes",
    "alert": "alerts.supply",
    "churn": "churn.alerts",
    "reorder": "reorder.signals",
}


def decoded(raw: Mapping[Any, Any]) -> dict[str, str]:
    """Bytes hash (as redis-py returns it) -> str -> str.

    >>> decoded({b"events": b"5", "x": 1})
    {'events': '5', 'x': '1'}
    """
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }


def parse_series(series: str) -> tuple[str, str]:
    """``"sku_store:SKU1:S001"`` -> ``("sku_store", "SKU1:S001")``; unknown level -> error.

    >>> parse_series("category:C01")
    ('category', 'C01')
    >>> parse_series("planet:earth")
    Traceback (most recent call last):
    ...
    ValueError: unknown level 'planet'
    """
    level, _, node = series.partition(":")
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    if not node:
        raise ValueError("no node given (e.g. total:all, sku:SKU00001, store:S001)")
    return level, node


@contextmanager
def _redis_errors(what: str) -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise InfraError(f"dashboard: reading {what} from Redis failed: {exc}") from exc


def _num(raw: str | None) -> float | None:
    """A number field, or None when missing or not finite (JSON has no NaN).

    >>> _num("0.5"), _num("nan"), _num(None), _num("x")
    (0.5, None, None, None)
    """
    try:
        value = float(raw) if raw not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


class DashboardReader:
    """Read-only views over the Redis contract for one key prefix."""

    def __init__(self, client: RedisClient, prefix: str, *, scan_limit: int = 5000) -> None:
        self.client = client
        self.prefix = prefix
        self.scan_limit = scan_limit

    def key(self, kind: str, entity: str) -> str:
        return redis_key(self.prefix, kind, entity)

    def channels(self) -> dict[str, str]:
        """Full channel name -> the page's event name."""
        return {channel_name(self.prefix, ch): name for name, ch in CHANNELS.items()}

    def pubsub(self) -> redis.client.PubSub:
        """A pub/sub connection (SUBSCRIBE only: the caller subscribes to :meth:`channels`)."""
        return self.client.pubsub(ignore_subscribe_messages=True)

    def _scan(self, kind: str, limit: int) -> list[str]:
        """Entities of ``kind`` (at most ``limit``, in SCAN order)."""
        head = self.key(kind, "")
        out: list[str] = []
        for raw in self.client.scan_iter(match=f"{head}*", count=1000):
            out.append((raw.decode() if isinstance(raw, bytes) else raw)[len(head) :])
            if len(out) >= limit:
                break
        return out

    # -- pipeline health ------------------------------------------------------------------

    def ingest(self) -> dict[str, dict[str, Any]]:
        """family -> events, dead letters (total and per stage), last event time, offsets."""
        with _redis_errors("the ingest counters"):
            return ingest_snapshot(self.client, self.prefix)

    # -- demand ---------------------------------------------------------------------------

    def series_list(self) -> dict[str, Any]:
        """Levels -> sorted nodes that have a forecast (bounded by ``scan_limit``)."""
        with _redis_errors("the forecast keys"):
            found = self._scan("forecast", self.scan_limit)
        by_level: dict[str, list[str]] = {}
        for series in found:
            level, _, node = series.partition(":")
            if level in LEVELS and node:
                by_level.setdefault(level, []).append(node)
        return {
            "levels": [lv for lv in LEVELS if lv in by_level],
            "nodes": {lv: sorted(nodes) for lv, nodes in by_level.items()},
            "truncated": len(found) >= self.scan_limit,
        }

    def forecast(self, level: str, node: str) -> dict[str, Any] | None:
        """The forecast hash of one series, typed; None if there is none (yet)."""
        with _redis_errors(f"forecast {level}:{node}"):
            raw = decoded(self.client.hgetall(self.key("forecast", f"{level}:{node}")))
        if not raw:
            return None
        out = forecast_fields(raw)
        for extra in ("safety_stock", "reorder_point", "lead_days"):
            if extra in raw:
                out[extra] = _num(raw[extra])
        return out

    def stored_history(self, level: str, node: str, count: int = 400) -> list[dict[str, Any]]:
        """Closed days of one series, if the demand flow stores them (proposed layout, see
        docs/dashboard.md): sorted set ``demand_days:index`` of closed days' ``as_of``, and
        per level and day a hash ``demand_day:<level>:<as_of>`` of ``<node>`` -> JSON
        ``[actual, mean, p10, p50, p90]`` (that day's units; the forecast for the next
        day). Without it, history is only what this server saw close live."""
        with _redis_errors(f"history of {level}:{node}"):
            index = self.key("demand_days", "index")
            members = cast(list[bytes], self.client.zrevrange(index, 0, count - 1))
            days = [int(d) for d in members]
            pipe = self.client.pipeline(transaction=False)
            for day in days:
                pipe.hget(self.key("demand_day", f"{level}:{day}"), node)
            replies = pipe.execute() if days else []
        points = []
        for day, raw in zip(reversed(days), reversed(replies), strict=True):
            row = loads_list(raw)
            if len(row) == 5:
                actual, mean, p10, p50, p90 = (_num(str(v)) for v in row)
                points.append(
                    {"as_of": day, "actual": actual or 0.0, "mean": mean, "p10": p10,
                     "p50": p50, "p90": p90}
                )  # fmt: skip
        return points

    def demand_scores(self) -> list[dict[str, Any]]:
        with _redis_errors("the demand scores"):
            entities = self._scan("demand_score", 500)
            pipe = self.client.pipeline(transaction=False)
            for e in entities:
                pipe.hgetall(self.key("demand_score", e))
            replies = pipe.execute()
        rows = []
        for entity, raw in zip(entities, replies, strict=True):
            level, _, h = entity.rpartition(":h")
            fields = decoded(raw)
            if level not in LEVELS or not h.isdigit() or not fields:
                continue
            row: dict[str, Any] = {"level": level, "h": int(h)}
            for name in ("n", "mae", "mae_mean", "rmse", "mae_naive", "mase", "coverage_p10_p90"):
                row[name] = _num(fields.get(name))
            rows.append(row)
        rows.sort(key=lambda r: (LEVELS.index(r["level"]), r["h"]))
        return rows

    # -- customers ------------------------------------------------------------------------

    def churn_top(self, n: int = 10) -> list[dict[str, Any]]:
        """The ``n`` customers with the most value at risk, with their scores."""
        with _redis_errors("the churn ranking"):
            top = cast(
                list[tuple[bytes, float]],
                self.client.zrevrange(self.key("churn", "value_at_risk"), 0, n - 1, True),
            )
            pipe = self.client.pipeline(transaction=False)
            for member, _ in top:
                pipe.hgetall(self.key("customer", decoded({"m": member})["m"]))
            details = pipe.execute() if top else []
        rows = []
        for (member, score), raw in zip(top, details, strict=True):
            fields = decoded(raw)
            customer = member.decode() if isinstance(member, bytes) else str(member)
            rows.append(
                {
                    "customer_id": customer,
                    "value_at_risk": round(float(score), 2),
                    "churn_risk": _num(fields.get("churn_risk")),
                    "clv_365d": _num(fields.get("clv_365d")),
                    "p_alive": _num(fields.get("p_alive")),
                    "orders": _num(fields.get("orders")),
                    "top_features": loads_list(fields.get("top_features"))[:3],
                    "as_of": _num(fields.get("as_of")),
                }
            )
        return rows

    # -- supply ---------------------------------------------------------------------------

    def alert_entries(self, count: int = 2000) -> list[tuple[str, dict[str, str]]]:
        """The newest ``count`` supply alert entries, oldest first (ready to fold)."""
        with _redis_errors("the supply alert stream"):
            newest = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                self.client.xrevrange(self.key("alerts", "supply"), "+", "-", count=count),
            )
        return [
            (eid.decode() if isinstance(eid, bytes) else str(eid), decoded(fields))
            for eid, fields in reversed(newest)
        ]

    # -- scores ---------------------------------------------------------------------------

    def scores(self) -> dict[str, Any]:
        """Prequential scores of the three model flows, and the demand flow's status."""
        demand = self.demand_scores()
        with _redis_errors("the model scores"):
            pipe = self.client.pipeline(transaction=False)
            for kind, entity in (
                ("churn", "metrics"),
                ("churn", "state"),
                ("supply_score", "leadtime"),
                ("supply_score", "detection"),
                ("demand_status", "flow"),
            ):
                pipe.hgetall(self.key(kind, entity))
            churn, churn_state, lead, det, status = (decoded(r) for r in pipe.execute())
        return {
            "demand": demand,
            "demand_status": {k: _num(v) for k, v in status.items() if not k.startswith("_")},
            "churn": {
                **{k: _num(churn.get(k)) for k in ("labels", "churned", "auc", "log_loss", "ece")},
                "reliability": loads_list(churn.get("reliability")),
                "customers_hot": _num(churn_state.get("hot")),
                "customers_cold": _num(churn_state.get("cold")),
            },
            "supply": {
                "leadtime": {k: _num(v) for k, v in lead.items() if not k.startswith("_")},
                "detection": {k: _num(v) for k, v in det.items() if not k.startswith("_")},
            },
        }
