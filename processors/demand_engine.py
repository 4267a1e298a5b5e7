"""The demand engine: daily demand, the shared forecaster, coherent forecasts, scores.

Pure (no Bytewax, no Redis): :mod:`streams.flows.demand` runs it as one keyed state and
the benchmark drives it directly. A day closes for every series at once, the global model
is shared, and bottom-up coherence needs every series anyway. Per event the engine only
increments counters; the work runs once per closed day (learn, forecast, reconcile, score,
publish). The watermark is the largest *order* event time: other topics can run ahead of
the orders during a backfill and must not close days early.

>>> s = DemandSettings()
>>> s.horizon_days, s.scored_horizons, s.service_level
(28, (1, 7, 14, 28), 0.95)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.demand import DemandForecaster, ResidualQuantiles
from processors.daily_demand import DAY_MS, ClosedDay, DailyDemand
from processors.demand_publish import ForecastBlock, Forecasts, json_rows
from processors.demand_settings import DemandSettings
from processors.inventory_policy import LeadTimes, Policy, reorder_points
from processors.reconcile import LEVELS, ColdStartPriors, Hierarchy, take_nodes
from processors.records import Event
from processors.watermark import PartitionWatermark
from processors.writes import HashWrite, RedisWrite, ZSetWrite

__all__ = ["HISTORY_TTL_MS", "DemandEngine", "DemandSettings", "Output"]

_FAMILIES = frozenset({"orders", "catalog", "stores", "clickstream", "inventory", "supplier"})
_PO_MAX_OPEN_MS = 120 * DAY_MS  # a PO not received in 120 days no longer teaches a lead time
# Per-day actuals history (demand_day hashes) lives this long: a year and a bit, so the
# dashboard can show last year's holiday season next to this one.
HISTORY_TTL_MS = 400 * DAY_MS
Output = RedisWrite | ForecastBlock  # what the engine hands the flow
# Score accumulator slots per (level, horizon).
_N, _AE_MEAN, _AE_P50, _SE_MEAN, _AE_NAIVE, _COVERED = range(6)


def _bucket(h: int, scored: tuple[int, ...]) -> int:
    """Horizon bucket of ``h``: the smallest scored horizon >= h (else the largest)."""
    return next((s for s in scored if h <= s), scored[-1])


class DemandEngine:
    """All demand state; :meth:`on_event` returns the Redis writes to make."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 2  # 2: last_sold, retired (series retirement)
    # > 0: a day's forecast hashes leave as that many ForecastBlocks, rendered by the flow
    # on other workers (processors/demand_publish.py); 0: rendered here. Not model state:
    # the flow sets it on every start.
    publish_blocks = 0

    def __init__(self, cfg: DemandSettings, timezone: str = "UTC") -> None:
        self.cfg = cfg
        self.book = DailyDemand(timezone=cfg.timezone or timezone, lateness_ms=cfg.lateness_ms)
        self.order_watermark = PartitionWatermark()  # min over order partitions (watermark.py)
        self.tree = Hierarchy()
        self.fc = DemandForecaster(
            horizon=cfg.horizon_days,
            country=cfg.country,
            lr=cfg.learning_rate,
            series_lr=cfg.series_learning_rate,
            alpha_min=cfg.alpha_min,
            prior_days=cfg.prior_days,
            series_features=cfg.series_features,
            group_alpha=cfg.group_alpha,
            fourier_terms=cfg.fourier_terms,
            adagrad=cfg.adagrad,
            event_effects=cfg.event_effects,
            event_priors=cfg.event_priors,
            event_prior_weight=cfg.event_prior_weight,
            event_level_weight=cfg.event_level_weight,
            drift_alpha=cfg.drift_alpha,
            drift_damping=cfg.drift_damping,
        )
        self.quantiles = ResidualQuantiles()
        self.leads = LeadTimes(default_days=cfg.default_lead_days)
        self.skus: dict[str, dict[str, Any]] = {}  # category, department, ref_price, price
        self.stores: dict[str, tuple[str, float | None]] = {}  # region, size
        self.scores: dict[tuple[str, int], np.ndarray] = {}
        self.history: dict[int, dict[str, np.ndarray]] = {}  # origin -> level -> (n, k, 4)
        self.actuals: dict[int, dict[str, np.ndarray]] = {}  # day -> level -> (n,)
        self.policy: Policy | None = None
        self.priors = ColdStartPriors()
        self.last_sold = np.zeros(0, dtype=np.int64)  # per series: last day with units (or added)
        self.retired = 0  # series retired so far
        self._ttl_ms = cfg.key_ttl_days * DAY_MS
        self.bad_events = 0
        self.days_closed = 0
        self.last_closed: tuple[int, int] | None = None  # (day, start ms) last published
        self.stale = False  # series were added since the last publication
        # horizons beyond the forecast horizon cannot be scored
        self.scored = tuple(h for h in cfg.scored_horizons if h <= cfg.horizon_days) or (1,)
        bucket = [_bucket(h, self.scored) for h in range(1, cfg.horizon_days + 1)]
        self._col_bucket = np.array(bucket)

    # -- events ---------------------------------------------------------------------------

    def on_event(self, event: Event) -> list[Output]:
        try:
            return self._on_event(event)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError):
            # Validated events should never get here; one bad record must not stop the flow.
            self.bad_events += 1
            return []

    def _on_event(self, e: Event) -> list[Output]:
        v = e.value
        if e.family == "orders":
            self.book.add_order(v)
            return self._close_days(
                self.order_watermark.observe(e.topic, e.partition, e.event_time)
            )
        if e.family == "clickstream":
            self.book.add_click(v)
        elif e.family == "catalog":
            self._on_catalog(v)
        elif e.family == "stores":
            self._on_store(v)
        elif e.family == "supplier":
            if v["event_type"] == "PO_CREATED":
                self.leads.created(v["po_id"], (v["sku"], v["store_id"]), e.event_time)
            elif v["event_type"] == "SHIPMENT_RECEIVED":
                self.leads.received(v["po_id"], e.event_time)
        elif e.family == "inventory":
            return self._on_inventory(v, e.event_time)
        return []

    def _on_catalog(self, v: dict[str, Any]) -> None:
        sku, kind = v["sku"], v["event_type"]
        info = self.skus.get(sku)
        price = float(v["price"])
        if info is None:
            launch = v.get("launch_date") or v["event_time"]
            info = self.skus[sku] = {"ref_price": price, "born": int(launch) // DAY_MS}
        info.update(category=v["category_id"], department=v["department_id"], price=price)
        if kind == "SKU_CREATED":
            info.pop("discontinued", None)  # relaunched
        elif kind == "SKU_DISCONTINUED":
            # Its series keep forecasting their decaying level until they have been silent
            # for retire_after_days (_retire); no new series.
            info["discontinued"] = True
        if info.get("discontinued"):
            return  # a clearance price change must not bring retired series back
        for store in self.stores:
            self._series(sku, store)

    def _on_store(self, v: dict[str, Any]) -> None:
        store = v["store_id"]
        self.stores[store] = (v["region_id"], v.get("size_sqm"))
        for sku, info in self.skus.items():
            if not info.get("discontinued"):
                self._series(sku, store)

    def _series(self, sku: str, store: str) -> int:
        """Index of the (sku, store) series, created (cold start) or re-pointed as needed."""
        info = self.skus.get(sku, {})
        region = self.stores.get(store, ("UNKNOWN", None))[0]
        cat, dept = info.get("category", "UNKNOWN"), info.get("department", "UNKNOWN")
        i = self.tree.index.get((sku, store))
        if i is not None:
            old = self.tree.series[i]
            if (old.category, old.department, old.region) != (cat, dept, region):
                self.tree.add(sku, store, cat, dept, region)
                self.fc.set_department(i, dept, self.tree.parent_of("category_store", i))
            return i
        i = self.tree.add(sku, store, cat, dept, region)
        self.stale = self.last_closed is not None
        born = int(info.get("born", self.book.next_day or 0))
        group = self.tree.parent_of("category_store", i)
        size = self.stores.get(store, ("", None))[1]
        prior = self.priors.prior(sku, store, cat, info.get("ref_price"), size)
        self.fc.add_series(dept, born, prior, group)
        added = self.book.next_day if self.book.next_day is not None else born
        self.last_sold = np.append(self.last_sold, added)  # silence counts from here
        return i

    def _on_inventory(self, v: dict[str, Any], t: int) -> list[Output]:
        i = self.tree.index.get((v["sku"], v["store_id"]))
        if i is None or self.policy is None or i >= len(self.policy.reorder_point):
            return []
        position = int(v["on_hand"]) + int(v.get("on_order") or 0)
        rop = float(self.policy.reorder_point[i])
        signal = position < rop
        fields = {
            "on_hand": int(v["on_hand"]),
            "position": position,
            "reorder_point": round(rop, 3),
            "safety_stock": round(float(self.policy.safety[i]), 3),
            "lead_days": round(float(self.policy.lead_days[i]), 2),
            "signal": int(signal),
            "suggested_qty": max(0, math.ceil(rop - position)) if signal else 0,
            "as_of": t,
        }
        entity = f"{v['sku']}:{v['store_id']}"
        channel = "reorder.signals" if signal else None
        return [HashWrite("reorder", entity, fields, t, self._ttl_ms, channel)]

    # -- day closing ----------------------------------------------------------------------

    def _close_days(self, watermark: int) -> list[Output]:
        closed = self.book.advance(watermark)
        if not closed:
            return []
        self.book.closed.clear()
        writes: list[Output] = []
        for day in closed:
            writes.extend(self.close_day(day))
        return writes

    def close_day(self, cd: ClosedDay) -> list[Output]:
        for sku, store in cd.units:
            self._series(sku, store)
        n = len(self.tree)
        y = np.zeros(n)
        promo = np.zeros(n)
        for key, units in cd.units.items():
            i = self.tree.index[key]
            y[i] = units
            self.last_sold[i] = cd.day
            promo[i] = min(1.0, cd.promo_units.get(key, 0.0) / units)
        actual = self.tree.aggregate(y)
        self._score(cd.day, actual)
        self.fc.learn_day(cd.day, y)
        price = np.array([self._log_price(s.sku) for s in self.tree.series])
        self.fc.observe_features(promo, price, self._views(cd) if self.cfg.click_features else None)
        self.actuals[cd.day] = actual
        self.actuals.pop(cd.day - 28, None)
        self.days_closed += 1
        if self.cfg.retire_after_days > 0:
            self._retire(cd.day)
        sizes = {k: v[1] for k, v in self.stores.items() if v[1]}
        prices = {k: (v.get("category", ""), v["ref_price"]) for k, v in self.skus.items()}
        self.priors.refresh(
            self.tree, self.fc.level, self.fc.days, self.fc.born, cd.day + 1, sizes, prices
        )
        self.leads.forget_before(cd.start_ms - _PO_MAX_OPEN_MS)  # bounded PO state
        self.last_closed = (cd.day, cd.start_ms)
        return self._publish(cd.day, cd.start_ms)

    def _retire(self, day: int) -> None:
        """Drop the series of discontinued SKUs without units for ``retire_after_days``
        (event time, at a day close: a replay retires the same series on the same day).
        Parents re-sum without them; one that sells again comes back as a cold start."""
        gone = {k for k, v in self.skus.items() if v.get("discontinued")}
        if not gone:
            return
        dead = np.fromiter((s.sku in gone for s in self.tree.series), bool, len(self.tree))
        dead &= day - self.last_sold >= self.cfg.retire_after_days
        if not dead.any():
            return
        keep = ~dead
        kept = self.tree.retain(keep)
        self.fc.retain(keep, kept["category_store"])
        self.last_sold = self.last_sold[keep]
        for by_day in (self.history, self.actuals):  # node-indexed: stays prefix-aligned
            for by_level in by_day.values():
                for level, values in by_level.items():
                    by_level[level] = take_nodes(values, kept[level])
        self.policy = None  # recomputed by the publication that follows
        self.retired += int(dead.sum())

    def flush(self) -> list[Output]:
        """Republish the last closed day if series were added since (cold starts get a
        forecast at once and the parents stay coherent; same version: no notification)."""
        if not self.stale or self.last_closed is None:
            return []
        return self._publish(*self.last_closed)

    def _views(self, cd: ClosedDay) -> np.ndarray:
        """Per series: log of the SKU's product views on the closed day against its usual
        (exponentially weighted) daily views: a leading signal of online demand."""
        ratio: dict[str, float] = {}
        for sku, info in self.skus.items():
            today = cd.views.get(sku, 0.0) + cd.carts.get(sku, 0.0)
            usual = info.get("views", today)
            ratio[sku] = math.log((today + 1.0) / (usual + 1.0))
            info["views"] = usual + 0.1 * (today - usual)
        return np.array([ratio.get(s.sku, 0.0) for s in self.tree.series])

    def _log_price(self, sku: str) -> float:
        info = self.skus.get(sku)
        if not info or info["ref_price"] <= 0 or info["price"] <= 0:
            return 0.0
        return math.log(info["price"] / info["ref_price"])

    def _score(self, day: int, actual: dict[str, np.ndarray]) -> None:
        """Prequential: forecasts made before this day's actuals, against them."""
        for k, h in enumerate(self.scored):
            stored = self.history.get(day - h)
            naive_day = self.actuals.get(day - 7 * math.ceil(h / 7))
            if stored is None:
                continue
            for level in LEVELS:
                f = stored[level]
                m = len(f) if naive_day is None else min(len(f), len(naive_day[level]))
                yv = actual[level][:m]
                mean, p10, p50, p90 = (f[:m, k, j] for j in range(4))
                self.quantiles.add(level, h, mean, yv)
                if naive_day is None:
                    continue
                acc = self.scores.setdefault((level, h), np.zeros(6))
                acc[_N] += m
                acc[_AE_MEAN] += np.abs(yv - mean).sum()
                acc[_AE_P50] += np.abs(yv - p50).sum()
                acc[_SE_MEAN] += ((yv - mean) ** 2).sum()
                acc[_AE_NAIVE] += np.abs(yv - naive_day[level][:m]).sum()
                acc[_COVERED] += ((yv >= p10) & (yv <= p90)).sum()

    def forecasts(self, origin: int) -> dict[str, list[np.ndarray]]:
        """level -> [mean, p10, p50, p90], each (nodes, H); the means are coherent."""
        means = self.tree.aggregate(self.fc.forecast(origin))
        return {
            level: [means[level], *self.quantiles.quantiles(level, self._col_bucket, means[level])]
            for level in LEVELS
        }

    def _publish(self, day: int, version: int) -> list[Output]:
        """The day's writes; the forecast hashes themselves as ``publish_blocks`` blocks
        for the flow to render elsewhere, or rendered here when it is 0 (the default)."""
        self.stale = False
        out = self.forecasts(day)
        scored = [h - 1 for h in self.scored]
        self.history[day] = {
            lv: np.stack([a[:, scored] for a in arrs], axis=2).astype(np.float32)
            for lv, arrs in out.items()
        }
        self.history.pop(day - max(self.scored), None)
        bottom = out["sku_store"]
        lead = np.array([self.leads.days((s.sku, s.store)) for s in self.tree.series])
        self.policy = reorder_points(bottom[0], bottom[1], bottom[3], lead, self.cfg.service_level)
        day_fc = Forecasts(self.tree.nodes, out, self.actuals[day], self.policy, version,
                           self.fc.version, self._ttl_ms)  # fmt: skip
        writes: list[Output] = []
        if self.publish_blocks > 0:
            writes.extend(day_fc.blocks(self.publish_blocks))
        else:
            writes.extend(day_fc.writes())
        writes.extend(self._history_writes(out, day, version))
        for (level, h), acc in self.scores.items():
            writes.append(HashWrite("demand_score", f"{level}:h{h}", _score_fields(acc), version))
        status = {
            "last_closed_day": version,
            "days_closed": self.days_closed,
            "series": len(self.tree),
            "model_version": self.fc.version,
            "late_events": self.book.late_events,
            "late_units": self.book.late_units,
            "bad_events": self.bad_events,
            "retired_series": self.retired,
        }
        writes.append(HashWrite("demand_status", "flow", status, version))
        return writes

    def _history_writes(
        self, out: dict[str, list[np.ndarray]], day: int, version: int
    ) -> list[RedisWrite]:
        """The day's history for the dashboard (``stored_history``): per level ONE hash
        ``demand_day:<level>:<as_of>`` of ``<node>`` -> ``[actual, mean, p10, p50, p90]``
        (8 writes a day whatever the number of series), and the day in the index."""
        writes: list[RedisWrite] = []
        for level, arrays in out.items():
            nodes = self.tree.nodes[level]
            actual = np.zeros(len(nodes))
            known = self.actuals[day][level][: len(nodes)]
            actual[: len(known)] = known
            rows = json_rows(np.column_stack([actual, *(a[:, 0] for a in arrays)]))
            fields = dict(zip(nodes, rows, strict=True))
            writes.append(
                HashWrite("demand_day", f"{level}:{version}", fields, version, HISTORY_TTL_MS)
            )
        writes.append(ZSetWrite("demand_days", "index", str(version), version))
        # The index stays bounded and in step with the hashes' TTL: the day whose hashes
        # expire now leaves it (its start from the clock: DST shifts local midnights; a
        # ZREM of an absent member is a no-op, so replays are harmless).
        expired = self.book.clock.start_ms(day - HISTORY_TTL_MS // DAY_MS)
        writes.append(ZSetWrite("demand_days", "index", str(expired), None))
        return writes


def _score_fields(acc: np.ndarray) -> dict[str, str | int | float]:
    n = max(float(acc[_N]), 1.0)
    mae, naive = float(acc[_AE_P50]) / n, float(acc[_AE_NAIVE]) / n
    return {
        "n": int(acc[_N]),
        "mae": round(mae, 5),
        "mae_mean": round(float(acc[_AE_MEAN]) / n, 5),
        "rmse": round(math.sqrt(float(acc[_SE_MEAN]) / n), 5),
        "mae_naive": round(naive, 5),
        "mase": round(mae / naive, 4) if naive > 0 else -1.0,
        "coverage_p10_p90": round(float(acc[_COVERED]) / n, 4),
    }
