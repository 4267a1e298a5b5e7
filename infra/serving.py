"""A small read API for services: one Redis round trip per call, typed results.

Reads the v1 contract (docs/redis.md) written by the flows; it never writes. Every method
sends one command, or one non-transactional pipeline, so a call costs one network round
trip whatever it returns (on a Redis Cluster, a ``redis+cluster://`` URL: one per node the
keys live on). Missing keys give ``None`` (a cold start), never ``KeyError``;
Redis failures raise :class:`~streams.errors.InfraError`, values that break the contract
raise :class:`~streams.errors.DecodeError`.

Example (a service with the read-only ACL user, docs/redis.md "Least privilege")::

    from infra.serving import RetailPulseReader

    with RetailPulseReader("redis://rp-reader:secret@127.0.0.1:6379/0", prefix="rp") as rp:
        c = rp.customer("CU0001443")            # CustomerScores | None
        f = rp.forecast("sku_store", "SKU00139:S004")   # Forecast | None (mean[0]: tomorrow)
        top = rp.top_churn_risks(10)            # [RankedCustomer(customer_id, value_at_risk)]
        alerts = rp.open_supply_alerts(20)      # [SupplyAlert], newest first
        x = rp.customer_features(["CU1", "CU2"])  # FeatureVectors: rows in CUSTOMER_FEATURES order
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import redis

from infra.cluster import RedisClient, connect, masked
from infra.redis_sink import redis_key
from streams.errors import DecodeError, InfraError, ValidationError

__all__ = ["CUSTOMER_FEATURES", "FORECAST_LEVELS", "SKU_FEATURES", "SKU_STORE_FEATURES",
           "CustomerScores", "FeatureVectors", "Forecast", "ImpactedPair", "RankedCustomer",
           "Reorder", "RetailPulseReader", "SupplyAlert"]  # fmt: skip

T = TypeVar("T")

FORECAST_LEVELS = ("sku_store", "sku", "category_store", "category", "department", "store",
                   "region", "total")  # fmt: skip
# Feature vectors have a fixed field order: a ranking model is trained on positions.
CUSTOMER_FEATURES = ("churn_risk", "p_alive", "expected_purchases_90d", "clv_365d",
                     "value_at_risk", "orders")  # fmt: skip
SKU_FEATURES = ("demand_next_day", "demand_next_7d", "demand_horizon", "p10_next_day",
                "p90_next_day", "actual_last_day")  # fmt: skip
# With a store: the stock fields are NaN while no inventory snapshot has been seen.
SKU_STORE_FEATURES = (*SKU_FEATURES, "on_hand", "position", "reorder_point", "safety_stock",
                      "lead_days", "reorder_signal", "days_of_cover")  # fmt: skip
_FORECAST_FIELDS = ("mean", "p10", "p90", "actual_last_day")
_REORDER_FIELDS = ("on_hand", "position", "reorder_point", "safety_stock", "lead_days", "signal")
MAX_COVER_DAYS = 365.0  # days_of_cover when nothing is expected to sell (keeps vectors finite)


@dataclass(frozen=True, slots=True)
class CustomerScores:
    """``<prefix>:v1:customer:<id>``; ``alerted``: a churn alert hash exists for them."""

    customer_id: str
    churn_risk: float
    p_alive: float
    expected_purchases_90d: float
    clv_365d: float
    value_at_risk: float
    top_features: tuple[tuple[str, float], ...]  # (feature, signed contribution)
    orders: int
    horizon_days: float
    as_of: int  # event time (ms) of the score
    version: int  # the flow's watermark when scored
    alerted: bool


@dataclass(frozen=True, slots=True)
class Forecast:
    """``<prefix>:v1:forecast:<level>:<node>``: H daily values from the day after ``as_of``."""

    level: str
    node: str
    mean: tuple[float, ...]
    p10: tuple[float, ...]
    p50: tuple[float, ...]
    p90: tuple[float, ...]
    model_version: int
    as_of: int  # ms, start of the last closed day
    actual_last_day: float
    safety_stock: float | None  # sku_store only
    reorder_point: float | None
    lead_days: float | None


@dataclass(frozen=True, slots=True)
class RankedCustomer:
    customer_id: str
    value_at_risk: float  # churn_risk x clv_365d


@dataclass(frozen=True, slots=True)
class ImpactedPair:
    sku: str
    store: str
    days_of_cover: float
    predicted_delay_days: float


@dataclass(frozen=True, slots=True)
class SupplyAlert:
    """The newest entry of one alert in ``<prefix>:v1:alerts:supply`` (a full snapshot)."""

    entry_id: str
    alert_id: str
    status: str  # "open" or "update" (closed alerts are folded away)
    supplier_id: str
    severity: str
    score: float
    affected_skus: tuple[str, ...]
    affected_stores: tuple[str, ...]
    impacted_pairs: tuple[ImpactedPair, ...]
    evidence: Mapping[str, Any]
    opened_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Reorder:
    """``<prefix>:v1:reorder:<sku>:<store>``: the newest inventory snapshot's policy."""

    sku: str
    store: str
    on_hand: int
    position: int
    reorder_point: float
    safety_stock: float
    lead_days: float
    signal: bool
    suggested_qty: int
    as_of: int


@dataclass(frozen=True, slots=True)
class FeatureVectors:
    """Rows in ``names`` order, one per id (in the order asked); ``None``: nothing known yet.

    >>> fv = FeatureVectors(("a", "b"), ("x", "y"), ((1.0, 2.0), None))
    >>> fv.get("x"), fv.get("y"), fv.get("z")
    ((1.0, 2.0), None, None)
    """

    names: tuple[str, ...]
    ids: tuple[str, ...]
    rows: tuple[tuple[float, ...] | None, ...]

    def get(self, entity_id: str) -> tuple[float, ...] | None:
        for i, row in zip(self.ids, self.rows, strict=True):
            if i == entity_id:
                return row
        return None

    def as_dict(self) -> dict[str, tuple[float, ...] | None]:
        return dict(zip(self.ids, self.rows, strict=True))


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _text_hash(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


def _floats(text: str) -> tuple[float, ...]:
    """``_floats("[1.0, 2.5]")`` -> ``(1.0, 2.5)``."""
    return tuple(float(x) for x in json.loads(text))


def _parse(key: str, build: Callable[..., T], *args: Any) -> T:
    try:
        return build(*args)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise DecodeError(f"{key} does not follow the v1 contract: {exc!r}") from exc


def _opt(h: Mapping[str, str], field: str) -> float | None:
    return float(h[field]) if field in h else None


def _num(value: Any) -> float:
    return math.nan if value is None else float(_s(value))


class RetailPulseReader:
    """Typed reads of the v1 contract; give it a URL (it owns the client) or a client."""

    def __init__(self, client_or_url: RedisClient | str, prefix: str = "rp") -> None:
        self._owned = isinstance(client_or_url, str)
        if isinstance(client_or_url, str):
            url = client_or_url
            try:  # a redis+cluster:// URL gives a cluster client (infra/cluster.py)
                client_or_url = connect(
                    url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5
                )
            except redis.RedisError as exc:
                raise InfraError(f"Redis at {masked(url)}: {exc}") from exc
        self._client: RedisClient = client_or_url
        self.prefix = prefix

    def key(self, kind: str, entity: str) -> str:
        return redis_key(self.prefix, kind, entity)

    def _send(self, what: str, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """One command as is, several as one pipeline: one round trip either way."""
        try:
            if len(commands) == 1:
                return [self._client.execute_command(*commands[0])]
            pipe = self._client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return list(pipe.execute())
        except redis.RedisError as exc:
            raise InfraError(f"Redis read of {what} failed: {exc}") from exc

    def _hash(self, key: str) -> dict[str, str]:
        return _text_hash(self._send(key, [("HGETALL", key)])[0])

    # -- customers ---------------------------------------------------------------------------
    def customer(self, customer_id: str) -> CustomerScores | None:
        """Scores of one customer and whether a churn alert is standing (one round trip)."""
        key = self.key("customer", customer_id)
        alert_key = self.key("churn_alert", customer_id)
        raw, alerted = self._send(key, [("HGETALL", key), ("EXISTS", alert_key)])
        if not raw:
            return None
        return _parse(key, _customer, customer_id, _text_hash(raw), bool(alerted))

    def top_churn_risks(self, n: int = 10) -> list[RankedCustomer]:
        """The ``n`` customers with the most value at risk, largest first (one ZREVRANGE)."""
        if n <= 0:
            return []
        key = self.key("churn", "value_at_risk")
        (rows,) = self._send(key, [("ZREVRANGE", key, 0, n - 1, "WITHSCORES")])
        if rows and not isinstance(rows[0], list | tuple):  # RESP2: member, score, ...
            rows = list(zip(rows[::2], rows[1::2], strict=True))
        return [RankedCustomer(_s(member), float(score)) for member, score in rows]

    def customer_features(self, customer_ids: Sequence[str]) -> FeatureVectors:
        """:data:`CUSTOMER_FEATURES` for each id, in one pipeline of HMGETs."""
        ids = tuple(customer_ids)
        keys = [self.key("customer", cid) for cid in ids]
        replies = self._send("customer features", [("HMGET", k, *CUSTOMER_FEATURES) for k in keys])
        rows = [
            None if all(v is None for v in values) else _parse(key, _vector, values)
            for key, values in zip(keys, replies if ids else [], strict=True)
        ]
        return FeatureVectors(CUSTOMER_FEATURES, ids, tuple(rows))

    # -- demand ----------------------------------------------------------------------------
    def forecast(self, level: str, node: str) -> Forecast | None:
        """One node's forecast; ``node`` may contain ':' (``forecast("sku_store", "SKU1:S1")``)."""
        if level not in FORECAST_LEVELS:
            raise ValidationError(f"unknown forecast level {level!r}; one of {FORECAST_LEVELS}")
        key = self.key("forecast", f"{level}:{node}")
        h = self._hash(key)
        return _parse(key, _forecast, level, node, h) if h else None

    def reorder(self, sku: str, store: str) -> Reorder | None:
        """The reorder policy of one SKU in one store (one HGETALL)."""
        key = self.key("reorder", f"{sku}:{store}")
        h = self._hash(key)
        return _parse(key, _reorder, sku, store, h) if h else None

    def sku_features(self, skus: str | Sequence[str], store: str | None = None) -> FeatureVectors:
        """Demand (and, with ``store``, stock) features of SKUs, in one pipeline.

        Without ``store``: :data:`SKU_FEATURES` from the chain-wide ``sku`` forecast; with
        it: :data:`SKU_STORE_FEATURES` from the ``sku_store`` forecast and the reorder hash.
        """
        ids = (skus,) if isinstance(skus, str) else tuple(skus)
        keys = [
            self.key("forecast", f"sku:{s}" if store is None else f"sku_store:{s}:{store}")
            for s in ids
        ]
        commands: list[tuple[str, ...]] = [("HMGET", k, *_FORECAST_FIELDS) for k in keys]
        if store is not None:
            commands += [("HMGET", self.key("reorder", f"{s}:{store}"), *_REORDER_FIELDS)
                         for s in ids]  # fmt: skip
        replies = self._send("sku features", commands) if ids else []
        rows: list[tuple[float, ...] | None] = []
        for i, key in enumerate(keys):
            fc, stock = replies[i], (replies[len(ids) + i] if store is not None else None)
            empty = all(v is None for v in fc)
            rows.append(None if empty else _parse(key, _sku_vector, fc, stock))
        names = SKU_FEATURES if store is None else SKU_STORE_FEATURES
        return FeatureVectors(names, ids, tuple(rows))

    # -- supply ----------------------------------------------------------------------------
    def open_supply_alerts(self, limit: int = 50) -> list[SupplyAlert]:
        """Open alerts, most recently opened first (one ZREVRANGE of ``alerts_open:supply``).

        The supply flow keeps one member per open alert holding its newest state
        (processors/open_alerts.py), so nothing is folded here.
        """
        if limit <= 0:
            return []
        key = self.key("alerts_open", "supply")
        (members,) = self._send(key, [("ZREVRANGE", key, 0, limit - 1)])
        out: list[SupplyAlert] = []
        for raw in members or ():
            h = _parse(key, json.loads, _s(raw))
            out.append(_parse(key, _alert, str(h.get("entry_id", "")), h))
        return out

    # -- lifecycle -------------------------------------------------------------------------
    def ping(self) -> bool:
        return bool(self._send("PING", [("PING",)])[0])

    def close(self) -> None:
        if self._owned:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _customer(customer_id: str, h: Mapping[str, str], alerted: bool) -> CustomerScores:
    top = tuple((str(f), float(c)) for f, c in json.loads(h["top_features"] or "[]"))
    return CustomerScores(
        customer_id, float(h["churn_risk"]), float(h["p_alive"]),
        float(h["expected_purchases_90d"]), float(h["clv_365d"]), float(h["value_at_risk"]),
        top, int(h["orders"]), float(h["horizon_days"]), int(h["as_of"]), int(h["_version"]),
        alerted,
    )  # fmt: skip


def _forecast(level: str, node: str, h: Mapping[str, str]) -> Forecast:
    return Forecast(
        level, node, _floats(h["mean"]), _floats(h["p10"]), _floats(h["p50"]), _floats(h["p90"]),
        int(h["model_version"]), int(h["as_of"]), float(h["actual_last_day"]),
        _opt(h, "safety_stock"), _opt(h, "reorder_point"), _opt(h, "lead_days"),
    )  # fmt: skip


def _reorder(sku: str, store: str, h: Mapping[str, str]) -> Reorder:
    return Reorder(
        sku, store, int(h["on_hand"]), int(h["position"]), float(h["reorder_point"]),
        float(h["safety_stock"]), float(h["lead_days"]), h["signal"] == "1",
        int(h["suggested_qty"]), int(h["as_of"]),
    )  # fmt: skip


def _vector(values: Sequence[Any]) -> tuple[float, ...]:
    """HMGET replies -> floats; a field missing from a present hash is NaN.

    >>> _vector([b"0.5", "3", None])[:2]
    (0.5, 3.0)
    """
    return tuple(_num(v) for v in values)


def _sku_vector(fc: Sequence[Any], stock: Sequence[Any] | None) -> tuple[float, ...]:
    """Forecast (mean, p10, p90, actual) and maybe stock HMGET replies -> a feature row.

    >>> _sku_vector(["[1.0, 2.0]", "[0.5, 1.0]", "[2.0, 3.0]", "4"], None)
    (1.0, 3.0, 3.0, 0.5, 2.0, 4.0)
    >>> _sku_vector(["[1.0, 1.0]", "[0, 0]", "[2, 2]", "1"], ["5", "7", "3", "1", "4", "0"])[6:]
    (5.0, 7.0, 3.0, 1.0, 4.0, 0.0, 7.0)
    """
    mean, p10, p90 = (_floats(_s(v)) if v is not None else () for v in fc[:3])
    week = round(sum(mean[:7]), 6)  # rounded: the inputs have 3 decimals; no 1.1800000000000002
    day1 = [values[0] if values else math.nan for values in (mean, p10, p90)]
    row = (day1[0], week, round(sum(mean), 6), day1[1], day1[2], _num(fc[3]))
    if stock is None:
        return row
    stock_row = [_num(v) for v in stock]
    per_day = week / max(1, len(mean[:7]))
    position = stock_row[1]
    cover = MAX_COVER_DAYS if per_day <= 0 else min(MAX_COVER_DAYS, position / per_day)
    return (*row, *stock_row, math.nan if math.isnan(position) else cover)


def _alert(entry_id: str, h: Mapping[str, str]) -> SupplyAlert:
    pairs = tuple(
        ImpactedPair(str(sku), str(store), float(cover), float(delay))
        for sku, store, cover, delay in json.loads(h.get("impacted_pairs") or "[]")
    )
    return SupplyAlert(
        entry_id, h["alert_id"], h["status"], h["supplier_id"], h["severity"], float(h["score"]),
        tuple(json.loads(h.get("affected_skus") or "[]")),
        tuple(json.loads(h.get("affected_stores") or "[]")), pairs,
        json.loads(h.get("evidence") or "{}"), int(h["opened_at"]), int(h["updated_at"]),
    )  # fmt: skip
