"""The customer book: every customer's profile, pending labels and the shared models.

Pure (no Bytewax, no Redis): :mod:`streams.flows.customers` runs it as one keyed state and
the benchmark drives it directly. Driven by event time only. Orders and clicks first pass a
:class:`ReorderBuffer`: they are applied in event-time order once every order and
clickstream partition has delivered past them, so a Kafka replay (partitions read in
batches, each running days ahead of the others) leaves the same state as a time-ordered
feed. Once per event-time day a sweep evicts idle customers to packed bytes, forgets
long-gone ones, re-scores quiet customers (so silent churners' risk rises) and matures
churn labels.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from models.bgnbd import BGNBDModel
from models.churn import ChurnModel
from models.clv import CLVModel
from processors.churn_labels import Label, LabelQueue, PrequentialMetrics
from processors.customer_profile import (
    DAY_MS,
    FEATURE_NAMES,
    AnonymousActivity,
    CustomerProfile,
    apply_click,
    apply_order,
    features,
    new_profile,
    pack,
    packed_times,
    unpack,
)
from processors.records import Event
from processors.sequencer import ReorderBuffer
from processors.writes import HashWrite, RedisWrite, ZSetWrite

__all__ = [
    "ALL_FEATURES",
    "CustomerBook",
    "CustomerScore",
    "CustomerSettings",
    "ReorderBuffer",
    "score_writes",
]

log = logging.getLogger(__name__)
ALL_FEATURES = (*FEATURE_NAMES, "bg_p_alive", "bg_p_no_purchase", "bg_logit_no_purchase",
                "bg_log_expected")  # fmt: skip


@dataclass(frozen=True)
class CustomerSettings:
    """Knobs of the customer flow (days are event-time days)."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    horizon_days: float = 90.0  # churn = no purchase within this many days
    snapshot_every_days: float = 30.0  # at most one pending label snapshot per customer per
    label_lateness_hours: float = 1.0  # watermark = max event time - this
    evict_idle_days: float = 30.0  # idle customers leave the hot map (packed bytes)
    forget_idle_days: float = 730.0  # then are dropped altogether
    anon_idle_days: float = 30.0  # devices with no activity are dropped
    rescore_every_days: float = 14.0  # quiet customers are re-scored this often ...
    rescore_max_idle_days: float = 180.0  # ... until idle this long (risk has saturated)
    risk_threshold: float = 0.7  # crossing it upwards raises an alert ...
    alert_min_clv: float = 100.0  # ... for customers worth at least this (currency)
    customer_ttl_days: float = 400.0  # Redis expiry of a customer's hash (wall clock)
    bgnbd_reservoir: int = 5_000
    bgnbd_refit_days: float = 7.0
    churn_warmup: int = 200
    churn_lr: float = 0.02
    clv_shrink: float = 3.0
    label_release: str = "horizon"  # or "purchase" (see processors.churn_labels)
    publish_min_change: float = 0.02  # re-publish a score when the risk moved this much
    # Reordering (see ReorderBuffer): at most this many events wait for slower partitions
    # (the oldest are applied beyond it), and nothing is applied before this many order /
    # clickstream partitions have delivered (1: whatever has delivered counts).
    reorder_max_events: int = 250_000
    reorder_min_streams: int = 1


@dataclass(frozen=True, slots=True)
class CustomerScore:
    customer: str
    as_of: int
    risk: float
    p_alive: float
    expected_90d: float
    clv_365d: float
    top: str  # JSON
    orders: int
    alert: bool
    version: int  # the watermark when scored: monotonic even when partitions interleave


def _logit(p: float) -> float:
    q = min(1 - 1e-6, max(1e-6, p))
    return math.log(q / (1 - q))


class CustomerBook:
    """All customer state and the global models; pure (no I/O), fed one event at a time."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(self, cfg: CustomerSettings) -> None:
        self.cfg = cfg
        self.hot: dict[str, CustomerProfile] = {}
        self.cold: dict[str, bytes] = {}
        self.anon: dict[str, AnonymousActivity] = {}
        self.categories: dict[str, str] = {}
        self.horizon_ms = int(cfg.horizon_days * DAY_MS)
        self.labels = LabelQueue(
            self.horizon_ms, int(cfg.snapshot_every_days * DAY_MS),
            int(cfg.label_lateness_hours * 3_600_000), cfg.label_release,
        )  # fmt: skip
        self.metrics = PrequentialMetrics()
        self.bg = BGNBDModel(reservoir=cfg.bgnbd_reservoir, refit_days=cfg.bgnbd_refit_days)
        self.churn = ChurnModel(lr=cfg.churn_lr, warmup=cfg.churn_warmup)
        self.clv = CLVModel(shrink=cfg.clv_shrink)
        self.watermark = -1
        self.buffer = ReorderBuffer(cfg.reorder_max_events, cfg.reorder_min_streams)
        self.next_sweep = -1
        self.errors = 0
        self.evictions = self.restores = self.forgotten = 0

    # -- state -----------------------------------------------------------------------------
    def profile(self, customer: str, t: int) -> CustomerProfile:
        p = self.hot.get(customer)
        if p is None:
            packed = self.cold.pop(customer, None)
            if packed is not None:
                p = unpack(packed)
                self.restores += 1
            else:  # cold start: the population priors carry the first scores
                p = new_profile(t)
            self.hot[customer] = p
        return p

    # -- events ----------------------------------------------------------------------------
    def process(self, ev: Event) -> list[CustomerScore]:
        """One event -> the scores it changed, once the watermark lets it through."""
        if ev.family not in ReorderBuffer.FAMILIES:  # catalog: a slow dimension, at once
            return self._apply(ev)
        self.buffer.push(ev)
        return self._drain()

    def process_batch(self, events: Iterable[Event]) -> list[CustomerScore]:
        """Several events: all are buffered before any is applied (a Bytewax batch holds
        records of several partitions; releasing after each would apply the first
        partition's before the others' of the same hours)."""
        out: list[CustomerScore] = []
        for ev in events:
            if ev.family in ReorderBuffer.FAMILIES:
                self.buffer.push(ev)
            else:
                out.extend(self._apply(ev))
        out.extend(self._drain())
        return out

    def flush(self) -> list[CustomerScore]:
        """End of a bounded input: apply everything still waiting for slower partitions."""
        out: list[CustomerScore] = []
        for ev in self.buffer.pop_all():
            out.extend(self._apply(ev))
        return out

    def _drain(self) -> list[CustomerScore]:
        out: list[CustomerScore] = []
        for ev in self.buffer.pop_ready():
            out.extend(self._apply(ev))
        return out

    def _apply(self, ev: Event) -> list[CustomerScore]:
        """Apply one event (bad records are counted, never raised)."""
        try:
            return self._process(ev)
        except Exception:  # a bad record must not stop the flow; see docs/customers.md
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                log.exception("customers: event %s/%s skipped", ev.topic, ev.offset)
            return []

    def _process(self, ev: Event) -> list[CustomerScore]:
        v, t = ev.value, ev.event_time
        out: list[CustomerScore] = []
        customer: str | None = None
        force = False
        if ev.family == "catalog":
            if v.get("sku") and v.get("category_id"):
                self.categories[v["sku"]] = v["category_id"]
            return out
        if ev.family == "orders":
            customer = v.get("customer_id")
            if customer:
                force = self._order(customer, v, t)
        elif ev.family == "clickstream":
            customer = self._click(v, t)
        # Events arrive here in event-time order (ReorderBuffer), so the largest time applied
        # is a safe watermark: no purchase at or before it is still to come (late records
        # beyond the buffer's reach excepted).
        wm = max(self.watermark, t)
        self._learn(self.labels.advance(wm))
        if customer:
            score = self._score(customer, self.hot[customer], t, force)
            if score is not None:
                out.append(score)
        if wm > self.watermark:
            self.watermark = wm
            self.bg.maybe_refit(wm)
            if wm >= self.next_sweep:
                out.extend(self.sweep(wm))
        return out

    def _order(self, customer: str, v: dict[str, Any], t: int) -> bool:
        """Apply an order; True when it was a purchase (its score is always published)."""
        p = self.profile(customer, t)
        kind = v.get("event_type", "")
        lines = v.get("lines") or []
        before = p.monetary
        apply_order(p, kind, lines, t, self.categories.get)
        if kind == "ORDER_PLACED":
            self._learn(self.labels.purchase(customer, t))
            self.clv.learn_one(p.monetary - before)
            self.bg.observe(customer, p.orders - 1, p.first_purchase, p.last_purchase)
            return True
        return False

    def _click(self, v: dict[str, Any], t: int) -> str | None:
        """Apply a click; the customer to re-score (only when it opened a session)."""
        anon_id, customer = v.get("anonymous_id") or "", v.get("customer_id")
        kind, session = v.get("event_type", ""), v.get("session_id") or ""
        a = self.anon.get(anon_id)
        if a is None:
            a = self.anon[anon_id] = AnonymousActivity(last_seen=t)
        a.last_seen = max(a.last_seen, t)
        if customer:
            a.customer_id = customer
        session_hash = zlib.crc32(session.encode()) or 1
        if a.customer_id is None:  # nobody known yet: count it for a later login
            a.count(kind, session_hash, t)
            return None
        p = self.profile(a.customer_id, t)
        a.merge_into(p)  # pre-login activity first, so its session is not counted twice
        opened = apply_click(p, kind, session_hash, t) or p.scored_at < 0
        return a.customer_id if opened else None

    def _learn(self, labels: Iterable[Label]) -> None:
        for lab in labels:
            self.metrics.update(lab.risk, lab.churned)
            values = array("f")
            values.frombytes(lab.features)  # type: ignore[arg-type]  # bytes: see _score
            self.churn.learn_one(dict(zip(ALL_FEATURES, values, strict=True)), lab.churned)

    # -- scoring ---------------------------------------------------------------------------
    def bg_stats(self, p: CustomerProfile, now: int) -> tuple[float, float, float]:
        """BG/NBD (x, t_x, T) in days; a customer who never bought is young and unproven."""
        first = p.first_purchase if p.first_purchase >= 0 else p.first_seen
        last = p.last_purchase if p.last_purchase >= 0 else first
        t_x = max(0.0, (last - first) / DAY_MS)
        return float(max(0, p.orders - 1)), t_x, max(t_x, (now - first) / DAY_MS)

    def feature_dict(self, p: CustomerProfile, now: int) -> dict[str, float]:
        x = features(p, now)
        n, t_x, T = self.bg_stats(p, now)
        p_none = self.bg.p_no_purchase(self.cfg.horizon_days, n, t_x, T)
        x["bg_p_alive"] = self.bg.p_alive(n, t_x, T)
        x["bg_p_no_purchase"] = p_none
        x["bg_logit_no_purchase"] = _logit(p_none)
        x["bg_log_expected"] = math.log1p(
            self.bg.expected_purchases(self.cfg.horizon_days, n, t_x, T)
        )
        return x

    def _score(
        self, customer: str, p: CustomerProfile, now: int, force: bool = False
    ) -> CustomerScore | None:
        """Score ``p`` at ``now`` (and keep a label snapshot); the score if it is published."""
        cfg = self.cfg
        x = self.feature_dict(p, now)
        risk = self.churn.predict_proba(x)
        # float32 bytes: ~130 bytes a snapshot instead of ~600 for a tuple of floats
        self.labels.offer(customer, now, array("f", [x[k] for k in ALL_FEATURES]).tobytes(), risk)
        first, p.scored_at = p.risk < 0, now
        moved = abs(risk - p.risk) >= cfg.publish_min_change
        crossed = p.risk < cfg.risk_threshold <= risk
        if not (force or first or moved or crossed):
            return None  # nothing worth a write: Redis keeps the previous score
        n, t_x, T = self.bg_stats(p, now)
        if cfg.horizon_days == 90.0:  # computed for the features already
            exp_90 = math.expm1(x["bg_log_expected"])
        else:
            exp_90 = self.bg.expected_purchases(90.0, n, t_x, T)
        clv = self.clv.clv(self.bg.expected_purchases(365.0, n, t_x, T), p.orders, p.monetary)
        alert = crossed and clv >= cfg.alert_min_clv
        p.risk = risk  # the published risk: alerts fire on crossing it upwards
        top = json.dumps(self.churn.top_features(x))
        version = max(self.watermark, now)
        return CustomerScore(
            customer, now, risk, x["bg_p_alive"], exp_90, clv, top, p.orders, alert, version
        )

    def sweep(self, now: int) -> list[CustomerScore]:
        """Daily, in event time: evict, forget, re-score quiet customers (sorted: replayable)."""
        cfg = self.cfg
        self.next_sweep = (now // DAY_MS + 1) * DAY_MS
        evict_before = now - int(cfg.evict_idle_days * DAY_MS)
        forget_before = now - int(cfg.forget_idle_days * DAY_MS)
        rescore_before = now - int(cfg.rescore_every_days * DAY_MS)
        quiet_after = now - int(cfg.rescore_max_idle_days * DAY_MS)
        out: list[CustomerScore | None] = []
        for c in sorted(self.hot):
            p = self.hot[c]
            if p.scored_at < rescore_before and p.last_event >= quiet_after:
                out.append(self._score(c, p, now))
            if p.last_event < evict_before:
                self.cold[c] = pack(p)
                del self.hot[c]
                self.evictions += 1
        for c in sorted(self.cold):
            last, scored_at = packed_times(self.cold[c])
            if last < forget_before:
                del self.cold[c]
                self.forgotten += 1
                out.append(CustomerScore(c, now, -1.0, 0.0, 0.0, 0.0, "", 0, False, now))  # ZREM
            elif last >= quiet_after and scored_at < rescore_before:
                q = unpack(self.cold[c])
                out.append(self._score(c, q, now))
                self.cold[c] = pack(q)
        idle_before = now - int(cfg.anon_idle_days * DAY_MS)
        for a in [k for k, a in self.anon.items() if a.last_seen < idle_before]:
            del self.anon[a]
        return [s for s in out if s is not None]

    def state_fields(self) -> dict[str, str | int | float]:
        return {
            "hot": len(self.hot), "cold": len(self.cold), "devices": len(self.anon),
            "pending_labels": len(self.labels), "errors": self.errors,
            "evictions": self.evictions, "restores": self.restores, "forgotten": self.forgotten,
            "watermark": self.watermark, "bgnbd": json.dumps(self.bg.params()),
            "bgnbd_fits": self.bg.fits, "labels_learned": self.churn.n,
            "buffered": len(self.buffer), "late": self.buffer.late,
        }  # fmt: skip


def score_writes(s: CustomerScore, cfg: CustomerSettings) -> list[RedisWrite]:
    """One score -> the customer hash, its value-at-risk rank and maybe an alert."""
    if s.risk < 0:  # forgotten
        return [ZSetWrite("churn", "value_at_risk", s.customer, None)]
    var = s.risk * s.clv_365d
    fields: dict[str, str | int | float] = {
        "churn_risk": round(s.risk, 6), "p_alive": round(s.p_alive, 6),
        "expected_purchases_90d": round(s.expected_90d, 4), "clv_365d": round(s.clv_365d, 2),
        "value_at_risk": round(var, 2), "top_features": s.top, "orders": s.orders,
        "horizon_days": cfg.horizon_days, "as_of": s.as_of,
    }  # fmt: skip
    out: list[RedisWrite] = [
        HashWrite("customer", s.customer, fields, s.version, int(cfg.customer_ttl_days * DAY_MS)),
        ZSetWrite("churn", "value_at_risk", s.customer, round(var, 4)),
    ]
    if s.alert:
        alert = {k: fields[k] for k in ("churn_risk", "clv_365d", "value_at_risk", "as_of")}
        alert["customer_id"] = s.customer
        ttl = int(cfg.customer_ttl_days * DAY_MS)
        out.append(HashWrite("churn_alert", s.customer, alert, s.version, ttl, "churn.alerts"))
    return out
