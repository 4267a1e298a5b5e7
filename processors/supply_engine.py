"""The supply engine: every supplier's POs, lead times, rates and detector in one state.

Pure (no Bytewax, no Redis): :mod:`streams.flows.supply` wires it into the dataflow and the
benchmark drives it directly. Supplier events are few (one PO makes ~4), so one engine sees
every supplier: the shared River lead-time model and the shared HalfSpaceTrees need all of
them, and "late" needs one event-time watermark that a silent (disrupted) supplier cannot
hold back. Time is event time only; a replay writes the same values.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from models.disruption import AlertEvent, DisruptionDetector
from models.lead_time import LeadTimeModel
from processors.open_alerts import OpenAlerts
from processors.purchase_orders import DAY_MS, POBook, POOutcome
from processors.supplier_metrics import SupplierMetrics
from processors.supply_impact import Cover, impacted_pairs
from processors.writes import HashWrite, RedisWrite, StreamAdd

__all__ = ["SupplyEngine", "SupplySettings", "detection_scores"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupplySettings:
    """Knobs of the supply flow (defaults measured in benchmarks/bench_supply.py)."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 2  # 2: cover_idle_days

    metrics_window_days: int = 28  # on-time / fill / incident rates over this many days
    on_time_grace_days: float = 1.0  # committed dates are days: arriving on the day is on time
    late_grace_days: float = 1.0  # an open PO is late once its committed day has passed
    partial_close_days: float = 7.0  # a partly received PO closes after this quiet spell
    abandon_days: float = 60.0  # a never-received PO is given up this long after its date
    lead_half_life: float = 20.0  # observations; memory of the per-key lead-time means
    lead_regressor: bool = True  # the shared River residual model on top of the means
    band_alpha: float = 0.1  # lead-time band targets 1 - alpha coverage
    open_score: float = 9.0  # detector: CUSUM score (log-likelihood ratio) opening an alert
    close_score: float = 1.0  # detector: below this the supplier counts as recovering...
    close_days: float = 4.0  # ...for this long, then the alert closes
    cooldown_days: float = 7.0  # no new alert for a supplier this soon after a close
    adwin_bonus: float = 1.0  # detector: added while ADWIN sees lead-time errors rise
    hst_weight: float = 0.0  # detector: HST weight (measured: no gain, so evidence only)
    min_channels: int = 1  # detector: evidence channels that must agree to open an alert
    burst_count: int = 5  # detector: long notices within burst_hours that make a burst
    burst_delay: float = 3.0  # detector: a notice this many days long counts toward a burst
    burst_hours: float = 6.0  # detector: the burst window
    channel_weights: tuple[float, ...] = (1.0,) * 6  # late short overdue notice incident burst
    demand_alpha: float = 0.1  # EWMA weight of the newest day of units sold (days of cover)
    tick_minutes: int = 60  # event-time granularity of late checks and alert closing
    idle_evict_days: float = 120.0  # suppliers silent this long are forgotten
    # SKU x store pairs without a sale, snapshot or forecast this long are dropped (the
    # engine's covers and the supply_cover trackers): discontinued pairs go quiet for good.
    cover_idle_days: float = 56.0
    alerts_maxlen: int = 10_000  # the alert stream is capped near this many entries
    max_pairs_in_alert: int = 50  # impacted SKU x store pairs listed per alert


class SupplyEngine:
    """Everything the supply flow knows, fed in event order; returns the Redis writes."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 2  # 2: open_alerts (the alerts_open sorted set)

    def __init__(self, s: SupplySettings) -> None:
        self.s = s
        self.book = POBook(
            late_grace_days=s.late_grace_days,
            partial_close_days=s.partial_close_days,
            abandon_days=s.abandon_days,
        )
        self.metrics: dict[str, SupplierMetrics] = {}
        self.lead = LeadTimeModel(
            half_life=s.lead_half_life, alpha=s.band_alpha, use_regressor=s.lead_regressor
        )
        self.detector = DisruptionDetector(
            open_score=s.open_score,
            close_score=s.close_score,
            close_days=s.close_days,
            cooldown_days=s.cooldown_days,
            on_time_days=s.on_time_grace_days,
            adwin_bonus=s.adwin_bonus,
            hst_weight=s.hst_weight,
            burst_count=s.burst_count,
            burst_delay=s.burst_delay,
            burst_hours=s.burst_hours,
            weights=s.channel_weights,
            min_channels=s.min_channels,
        )
        self.covers: dict[tuple[str, str], tuple[float, int]] = {}
        self.ratio: dict[str, float] = {}  # supplier -> recent EW of lead / promised
        self.moving: dict[str, deque[float]] = {}  # last 10 lead times: the MAE baseline
        self.last_seen: dict[str, int] = {}
        self.watermark = 0
        self.next_tick: dict[str, int] = {}  # per supplier: next late check / alert tick
        self.evicted_day = 0
        self.stream_id = (0, 0)
        self.score = {"n": 0, "abs_err": 0.0, "abs_err_ma": 0.0, "covered": 0}
        self.alerts = {"open": 0, "update": 0, "closed": 0}
        self.open_alerts = OpenAlerts("alerts_open", "supply")  # read in one ZREVRANGE
        self.errors = 0
        self.dirty: set[str] = set()  # suppliers whose hash changed since the last flush

    # -- input ----------------------------------------------------------------------------
    def on_supplier(self, value: dict[str, Any], t: int) -> list[RedisWrite]:
        sup = value["supplier_id"]
        seen = self.last_seen[sup] = max(t, self.last_seen.get(sup, 0))
        self.watermark = max(self.watermark, t)
        out: list[RedisWrite] = []
        for o in self.book.apply(value, t):
            out.extend(self._outcome(o))
        out.extend(self._advance(sup, seen))
        return out

    def on_cover(self, sku: str, store: str, cover: Cover) -> list[RedisWrite]:
        # Covers do not move the clock: they come from a per-store stage whose output time
        # depends on how partitions interleave, while supplier events are sequenced here
        # (docs/event-time.md); the watermark follows supplier events only.
        self.covers[(sku, store)] = (cover.days_of_cover, cover.t)
        return []

    def _advance(self, sup: str, wm: int) -> list[RedisWrite]:
        """Event time moves per supplier (its events share a partition: never read ahead)."""
        step = self.s.tick_minutes * 60_000
        if wm < self.next_tick.get(sup, 0):
            return []
        self.next_tick[sup] = (wm // step + 1) * step
        out: list[RedisWrite] = []
        for o in self.book.advance(wm, sup):
            out.extend(self._outcome(o))
        for a in self.detector.tick(wm, sup):
            out.extend(self._alert(a))
        day = self.watermark // DAY_MS
        if day > self.evicted_day:  # once a day: forget idle suppliers
            self.evicted_day = day
            self._evict()
        return out

    def _evict(self) -> None:
        horizon = self.watermark - int(self.s.idle_evict_days * DAY_MS)
        for sup in [k for k, seen in self.last_seen.items() if seen < horizon]:
            for table in (self.last_seen, self.metrics, self.ratio, self.moving):
                table.pop(sup, None)
            self.detector.forget(sup)
            self.lead.forget(sup)
            self.book.forget(sup)
            self.next_tick.pop(sup, None)
        # Covers of idle pairs (supplier time: covers do not move the clock, see on_cover).
        if self.s.cover_idle_days > 0:
            stale = self.watermark - int(self.s.cover_idle_days * DAY_MS)
            self.covers = {k: v for k, v in self.covers.items() if v[1] >= stale}

    # -- outcomes -------------------------------------------------------------------------
    def _outcome(self, o: POOutcome) -> list[RedisWrite]:
        sup = o.supplier_id
        m = self.metrics.get(sup)
        if m is None:
            m = self.metrics[sup] = SupplierMetrics(
                window_days=self.s.metrics_window_days, on_time_grace_days=self.s.on_time_grace_days
            )
        m.add(o)
        out: list[RedisWrite] = []
        alerts: list[AlertEvent] = []
        obs = self.detector.observe
        sku, store = o.sku, o.store_id
        if o.kind == "receipt" and o.lead_days is not None:
            out.extend(self._learn_lead(o))
            late = None if o.promised_days is None else o.lead_days - o.promised_days
            alerts = obs(sup, o.t, "receipt", lateness_days=late, sku=sku, store=store)
        elif o.kind == "dispatch":
            alerts = obs(sup, o.t, "dispatch", fill=o.fill_rate, sku=sku, store=store)
        elif o.kind == "late":
            alerts = obs(sup, o.t, "overdue", sku=sku, store=store)
        elif o.kind == "delay":
            alerts = obs(sup, o.t, "notice", delay_days=o.delay_days,
                         promised_days=o.promised_days, sku=sku, store=store)  # fmt: skip
        elif o.kind == "incident":
            alerts = obs(sup, o.t, "incident", sku=sku, store=store)
        for a in alerts:
            out.extend(self._alert(a))
        self.dirty.add(sup)  # its risk hash is written once per batch (flush)
        return out

    def _features(self, o: POOutcome) -> dict[str, Any]:
        return {"supplier_id": o.supplier_id, "sku": o.sku, "promised_days": o.promised_days,
                "quantity": o.quantity}  # fmt: skip

    def _learn_lead(self, o: POOutcome) -> list[RedisWrite]:
        y = float(o.lead_days or 0.0)
        x = self._features(o)
        pred = self.lead.predict_one(x)  # prequential: score before learning
        ma = self.moving.setdefault(o.supplier_id, deque(maxlen=10))
        sc = self.score
        sc["n"] += 1
        sc["abs_err"] += abs(y - pred.mean)
        sc["abs_err_ma"] += abs(y - (sum(ma) / len(ma) if ma else pred.mean))
        sc["covered"] += int(pred.low <= y <= pred.high)
        ma.append(y)
        self.lead.learn_one(x, y)
        if o.promised_days:
            r = self.ratio.get(o.supplier_id, 1.0)
            self.ratio[o.supplier_id] = r + 0.3 * (y / o.promised_days - r)
        nxt = self.lead.predict_one(x)
        fields: dict[str, str | int | float] = {
            "mean_days": nxt.mean,
            "low_days": nxt.low,
            "high_days": nxt.high,
            "level": nxt.level,
            "last_days": y,
            "as_of": self.watermark,
        }
        return [HashWrite("leadtime", f"{o.supplier_id}:{o.sku}", fields, self.watermark)]

    def _supplier_write(self, sup: str) -> HashWrite:
        w = self.detector.watches.get(sup)
        score = self.detector.score(w, self.watermark)[0] if w is not None else 0.0
        pred = self.lead.predict_one({"supplier_id": sup})
        fields: dict[str, str | int | float] = {
            **self.metrics[sup].rates(self.watermark),
            "risk_score": round(min(1.0, score / (2 * self.s.open_score)), 4),
            "status": "disrupted" if w is not None and w.episode else "ok",
            "alert_id": w.episode.alert_id if w is not None and w.episode else "",
            "lead_mean_days": pred.mean,
            "lead_low_days": pred.low,
            "lead_high_days": pred.high,
            "overdue_pos": self.book.overdue(sup),
            "as_of": self.watermark,
        }
        return HashWrite("supplier", sup, fields, self.watermark)

    # -- alerts ---------------------------------------------------------------------------
    def predicted_delay(self, sup: str, sku: str, store: str, created_at: int | None) -> float:
        """Days until a PO of this pair is expected in, its lead stretched by recent lateness."""
        pred = self.lead.predict_one({"supplier_id": sup, "sku": sku})
        lead = pred.mean * max(1.0, self.ratio.get(sup, 1.0))
        start = created_at if created_at is not None else self.watermark
        return max(0.0, (start + lead * DAY_MS - self.watermark) / DAY_MS)

    def _alert(self, a: AlertEvent) -> list[RedisWrite]:
        """The alert's stream entry, and its open-alerts set member replaced (or removed)."""
        self.alerts[a.status] += 1
        open_pos = self.book.open_for(a.supplier_id)
        skus = sorted(set(a.skus) | {po.sku for po in open_pos})
        stores = sorted(set(a.stores) | {po.store_id for po in open_pos})
        delays: dict[tuple[str, str], float] = {}
        for po in open_pos:
            d = self.predicted_delay(a.supplier_id, po.sku, po.store_id, po.created_at)
            delays[(po.sku, po.store_id)] = max(d, delays.get((po.sku, po.store_id), 0.0))
        hit = impacted_pairs(self.covers, delays)[: self.s.max_pairs_in_alert]
        m = self.metrics.get(a.supplier_id)
        rates = m.rates(self.watermark, 7) if m else {}
        evidence = {**a.evidence, "late_pos": self.book.overdue(a.supplier_id),
                    "fill_rate_7d": rates.get("fill_rate", 1.0)}  # fmt: skip
        fields: dict[str, str | int | float] = {
            "alert_id": a.alert_id,
            "status": a.status,
            "supplier_id": a.supplier_id,
            "severity": a.severity,
            "score": a.score,
            "affected_skus": json.dumps(skus),
            "affected_stores": json.dumps(stores),
            "impacted_pairs": json.dumps(hit),
            "evidence": json.dumps(evidence, sort_keys=True),
            "opened_at": a.opened_at,
            "updated_at": max(a.t, self.watermark),
        }
        ms = max(a.t, self.watermark, self.stream_id[0])
        seq = self.stream_id[1] + 1 if ms == self.stream_id[0] else 0
        self.stream_id = (ms, seq)
        entry = StreamAdd(
            "alerts", "supply", fields, ms, seq, self.s.alerts_maxlen, channel="alerts.supply"
        )
        return [entry, *self.open_alerts.update(fields, ms, seq)]

    def flush(self) -> list[RedisWrite]:
        """End of a batch: one risk hash per supplier that changed, and the scores."""
        out: list[RedisWrite] = [
            self._supplier_write(sup) for sup in sorted(self.dirty) if sup in self.metrics
        ]
        self.dirty.clear()
        return [*out, *self.score_writes()] if out else []

    def score_writes(self) -> list[RedisWrite]:
        sc, n = self.score, max(1, int(self.score["n"]))
        lead = {"n": sc["n"], "mae_days": round(sc["abs_err"] / n, 4),
                "mae_moving_average_days": round(sc["abs_err_ma"] / n, 4),
                "coverage": round(sc["covered"] / n, 4), "target_coverage": 1 - self.s.band_alpha,
                "errors": self.errors, "as_of": self.watermark}  # fmt: skip
        det = {**{f"alerts_{k}": v for k, v in self.alerts.items()}, "as_of": self.watermark}
        return [HashWrite("supply_score", "leadtime", lead, self.watermark),
                HashWrite("supply_score", "detection", det, self.watermark)]  # fmt: skip


def detection_scores(
    episodes: list[dict[str, Any]], alerts: list[tuple[str, int]], *, slack_days: float = 7.0
) -> dict[str, Any]:
    """Recall, precision, delays (days) and alerts per episode of opened ``alerts``.

    An alert matches an episode of its supplier when it opens between the episode's start
    and ``slack_days`` after its end (late POs of an episode keep arriving after it).
    """
    slack = int(slack_days * DAY_MS)
    delays: list[float] = []
    per_episode: list[int] = []
    matched: set[int] = set()
    for ep in episodes:
        hits = [
            i
            for i, (sup, t) in enumerate(alerts)
            if sup == ep["supplier_id"] and ep["start"] <= t <= ep["end"] + slack
        ]
        per_episode.append(len(hits))
        matched.update(hits)
        if hits:
            delays.append(min(alerts[i][1] for i in hits) / DAY_MS - ep["start"] / DAY_MS)
    delays.sort()

    def pct(q: float) -> float | None:
        return round(delays[min(len(delays) - 1, int(q * len(delays)))], 2) if delays else None

    found = sum(1 for n in per_episode if n)
    return {
        "episodes": len(episodes),
        "alerts": len(alerts),
        "recall": round(found / len(episodes), 3) if episodes else None,
        "precision": round(len(matched) / len(alerts), 3) if alerts else None,
        "median_delay_days": pct(0.5),
        "p90_delay_days": pct(0.9),
        "alerts_per_detected_episode": round(sum(per_episode) / found, 2) if found else None,
    }
