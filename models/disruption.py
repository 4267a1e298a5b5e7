"""Supplier disruption detection: a CUSUM over evidence channels, ADWIN, one shared forest.

Every observation of a supplier falls in one evidence channel and is good or bad:

=========  ==========================================  =====================================
channel    bad                                         good
=========  ==========================================  =====================================
late       a receipt ``late_z`` healthy sigmas late    any other receipt
short      a dispatch shipping < ``short_fill``        a complete dispatch
overdue    an open PO past its date, nothing received  a receipt on or before its date
notice     a delay notice >= ``notice_ratio`` x lead   a short delay notice
incident   a quality incident                          a receipt (before any incident)
burst      the ``burst_count``-th notice of >=         (one-sided: no good observations)
           ``burst_delay`` days within ``burst_hours``
=========  ==========================================  =====================================

Per supplier (:class:`SupplierWatch`, ~1 KB pickled) the healthy bad rate ``p`` of each
channel is learned while the supplier is quiet (no episode, aftermath or notice burst); a
disrupted supplier is assumed to show ``q = min(0.95, max(m p, p + a))`` (``_LIFT``;
incidents only double). A channel votes once it has ``min_history`` healthy observations
(bursts at once: their prior rate is low and they are rare). Each observation adds its
log-likelihood ratio ``log(q/p)`` (bad) or ``log((1-q)/(1-p))`` (good) to a CUSUM
``S = max(0, S + llr)``, the classic quickest-detection statistic: near 0 while healthy, it
climbs at the first run of bad news. A burst is the onset signal: a supplier announcing long
delays on many POs at once. ADWIN on the supplier's normalised lead-time errors adds
``adwin_bonus`` when it sees the mean rise; ONE HalfSpaceTrees shared by all suppliers
(~170 KB) scores the recent channel shares (``hst_weight`` x how far it is above 0.5).

Episodes: an alert opens when ``S >= open_score``; while open it is updated (same alert id)
when its severity rises, or (at most daily) when it touches new SKUs or stores; it closes
once ``S`` has stayed under ``close_score`` for ``close_days`` (hysteresis, S capped at
``3 x open_score`` so a long episode drains in bounded time), and the supplier cannot open
again for ``cooldown_days``: one episode, one alert id.

>>> d = DisruptionDetector(min_history=10)
>>> day = 86_400_000
>>> alerts = []
>>> for i in range(80):  # a healthy supplier
...     t = i * day // 4
...     alerts += d.observe("S1", t, "receipt", lateness_days=i % 3 - 1.0, sku="K", store="A")
...     alerts += d.observe("S1", t, "dispatch", fill=1.0 if i % 10 else 0.5, sku="K")
>>> alerts
[]
>>> for i in range(12):  # then short shipments and long delay notices
...     t = 20 * day + i * day // 4
...     alerts += d.observe("S1", t, "notice", delay_days=9.0, promised_days=7.0, sku="K")
...     alerts += d.observe("S1", t, "dispatch", fill=0.5, sku="K", store="B")
>>> [(a.status, a.supplier_id) for a in alerts][:1]
[('open', 'S1')]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from river import anomaly, drift

from models.base import OnlineModel

__all__ = ["CHANNELS", "AlertEvent", "DisruptionDetector", "Episode", "SupplierWatch"]

DAY_MS = 86_400_000
CHANNELS = ("late", "short", "overdue", "notice", "incident", "burst")
_PRIOR = (0.05, 0.1, 0.5, 0.1, 0.02, 0.02)  # healthy bad rates before any data
# A disrupted supplier's bad rate is assumed to be max(mult * p, p + add): incidents only
# double (rare, weak evidence), the other channels jump.
_LIFT = ((3.0, 0.3), (3.0, 0.3), (1.5, 0.3), (3.0, 0.3), (2.0, 0.0), (3.0, 0.3))
_SEVERITIES = ("low", "medium", "high")


@dataclass(slots=True)
class Episode:
    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    alert_id: str
    opened_at: int
    updated_at: int
    severity: str
    peak_score: float
    calm_since: int | None = None
    skus: set[str] = field(default_factory=set)
    stores: set[str] = field(default_factory=set)
    reported: tuple[str, int, int] = ("", 0, 0)  # severity, #skus, #stores last announced


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert transition: ``open``, ``update`` or ``closed`` of one episode."""

    status: str
    alert_id: str
    supplier_id: str
    severity: str
    t: int
    opened_at: int
    score: float
    evidence: dict[str, float]
    skus: tuple[str, ...]
    stores: tuple[str, ...]


class SupplierWatch:
    """Per-supplier detector state: CUSUM, healthy rates, recent shares, ADWIN, episode."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    __slots__ = (
        "adwin", "base_n", "base_rate", "change_at", "closed_at", "cusum", "episode",
        "hst_next", "last_t", "lead_mean", "lead_n", "lead_var", "long_notices", "recent",
        "recent_n",
    )  # fmt: skip

    def __init__(self) -> None:
        self.cusum = 0.0
        self.base_rate = list(_PRIOR)  # healthy share of bad observations, per channel
        self.base_n = [0.0] * len(CHANNELS)
        self.recent = [0.0] * len(CHANNELS)  # decayed bad counts (the forest's features)
        self.recent_n = [0.0] * len(CHANNELS)  # decayed observation counts
        self.lead_mean, self.lead_var, self.lead_n = 0.0, 4.0, 0.0  # healthy lateness, days
        self.adwin = drift.ADWIN(delta=0.002, clock=1, grace_period=10)
        self.change_at: int | None = None  # event time ADWIN last saw the error mean rise
        self.last_t = 0
        self.long_notices: list[int] = []  # event times of long notices in the burst window
        self.hst_next = 0  # event time of this supplier's next sample for the shared forest
        self.episode: Episode | None = None
        self.closed_at: int | None = None

    def decay_to(self, t: int, tau_ms: float) -> None:
        if t > self.last_t:
            f = math.exp(-(t - self.last_t) / tau_ms)
            self.recent = [v * f for v in self.recent]
            self.recent_n = [v * f for v in self.recent_n]
            self.last_t = t


class DisruptionDetector(OnlineModel):
    """Per-supplier watches + one shared HalfSpaceTrees -> episodes -> :class:`AlertEvent` s."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(
        self,
        *,
        open_score: float = 9.0,
        close_score: float = 1.0,
        close_days: float = 4.0,
        cooldown_days: float = 7.0,
        recent_days: float = 3.0,
        baseline_weight: float = 300.0,
        min_history: float = 20.0,
        late_z: float = 2.0,
        short_fill: float = 0.95,
        notice_ratio: float = 1.0,
        on_time_days: float = 1.0,
        adwin_bonus: float = 1.0,
        hst_weight: float = 0.0,
        burst_count: int = 5,
        burst_delay: float = 3.0,
        burst_hours: float = 6.0,
        weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
        min_channels: int = 1,
        seed: int = 7,
    ) -> None:
        self.min_channels = min_channels  # channels that must agree before an alert opens
        self.weights = weights  # per channel (CHANNELS order): scales its log-likelihood ratios
        self.open_score, self.close_score = open_score, close_score
        self.close_ms, self.cooldown_ms = close_days * DAY_MS, cooldown_days * DAY_MS
        self.tau_ms = recent_days * DAY_MS  # memory of the recent shares the forest scores
        self.baseline_weight = baseline_weight  # observations in a healthy rate's memory
        self.min_history = min_history  # healthy observations a channel needs to vote
        self.late_z, self.short_fill, self.notice_ratio = late_z, short_fill, notice_ratio
        self.on_time_days = on_time_days  # a committed date is a day: arriving on it is on time
        self.adwin_bonus, self.hst_weight = adwin_bonus, hst_weight
        # A burst: the supplier announces long delays on several POs at once (onset news).
        self.burst_count, self.burst_delay = burst_count, burst_delay
        self.burst_ms = int(burst_hours * 3_600_000)
        self.watches: dict[str, SupplierWatch] = {}
        limits: dict[Any, tuple[float, float]] = {c: (0.0, 1.0) for c in CHANNELS}
        self.hst = anomaly.HalfSpaceTrees(
            n_trees=10, height=8, window_size=100, limits=limits, seed=seed
        )
        self.hst_n = 0

    # -- evidence -------------------------------------------------------------------------
    def observe(
        self,
        supplier: str,
        t: int,
        kind: str,
        *,
        lateness_days: float | None = None,
        fill: float | None = None,
        delay_days: float | None = None,
        promised_days: float | None = None,
        sku: str | None = None,
        store: str | None = None,
    ) -> list[AlertEvent]:
        """One observation of ``supplier`` at event time ``t`` (see the module table):

        ``receipt`` (``lateness_days`` after the promised date), ``dispatch`` (``fill``: share
        of the order shipped), ``overdue``, ``notice`` (``delay_days`` on a PO promised in
        ``promised_days``), ``incident``. Returns the alert transitions it causes.
        """
        w = self.watches.get(supplier)
        if w is None:
            w = self.watches[supplier] = SupplierWatch()
        w.decay_to(t, self.tau_ms)
        obs: list[tuple[int, bool]] = []  # (channel, bad)
        if kind == "receipt" and lateness_days is not None:
            obs.append((0, self._late(w, t, lateness_days)))
            obs.append((4, False))  # a receipt without an incident (one may follow)
            if lateness_days < self.on_time_days:
                obs.append((2, False))  # arrived in time: one PO that was never overdue
        elif kind == "dispatch" and fill is not None:
            obs.append((1, fill < self.short_fill))
        elif kind == "overdue":
            obs.append((2, True))
        elif kind == "notice":
            # A long delay for the PO's promise is news; a day or two happens all the time.
            limit = self.notice_ratio * promised_days if promised_days else 3.0
            obs.append((3, (delay_days or 0.0) >= max(1.0, limit)))
            if self.burst_count > 0 and (delay_days or 0.0) >= self.burst_delay:
                w.long_notices = [u for u in w.long_notices if u > t - self.burst_ms] + [t]
                obs.append((5, len(w.long_notices) >= self.burst_count))
        elif kind == "incident":
            obs.append((4, True))
        if not obs:
            return []
        # Healthy rates learn only from a quiet supplier: not during an episode or its
        # aftermath, and not while the CUSUM climbs (else the onset becomes the norm).
        healthy = (
            w.episode is None
            and w.cusum < self.open_score / 2
            and sum(u > t - self.burst_ms for u in w.long_notices) < max(1, self.burst_count)
            and (w.closed_at is None or t >= w.closed_at + self.cooldown_ms)
        )
        for ch, bad in obs:
            p = w.base_rate[ch]
            # No verdict on a rate not learned yet; bursts vote at once (prior ~0: rare).
            if w.base_n[ch] >= self.min_history or ch == 5:
                mult, add = _LIFT[ch]
                q = min(0.95, max(mult * p, p + add))
                llr = math.log(q / p) if bad else math.log((1 - q) / (1 - p)) * (ch < 5)
                llr *= self.weights[ch]
                w.cusum = min(3 * self.open_score, max(0.0, w.cusum + llr))
            w.recent[ch] += float(bad)
            w.recent_n[ch] += 1.0
            if healthy:
                n = w.base_n[ch] = min(w.base_n[ch] + 1.0, self.baseline_weight)
                p += (float(bad) - p) / (n + 10.0)  # 10 pseudo-observations at the prior
                w.base_rate[ch] = min(0.9, max(0.005, p))
        if w.episode is not None and any(bad for _, bad in obs):
            w.episode.skus.update([sku] if sku else [])
            w.episode.stores.update([store] if store else [])
        return self._evaluate(supplier, w, t, sku, store)

    def _late(self, w: SupplierWatch, t: int, lateness: float) -> bool:
        """Is this receipt ``late_z`` healthy sigmas late? (ADWIN watches the same z.)"""
        sd = math.sqrt(w.lead_var) if w.lead_n >= 5 else 2.0
        z = (lateness - w.lead_mean) / max(sd, 0.5)
        before = w.adwin.estimation
        w.adwin.update(max(-5.0, min(5.0, z)))
        if w.adwin.drift_detected and w.adwin.estimation > before:
            w.change_at = t
        if w.episode is None:
            w.lead_n = min(w.lead_n + 1.0, self.baseline_weight)
            a = 1.0 / w.lead_n
            d = lateness - w.lead_mean
            w.lead_mean += a * d
            w.lead_var = max(0.25, (1 - a) * (w.lead_var + a * d * d))
        return z > self.late_z

    def score(
        self, w: SupplierWatch, t: int, *, forest: bool = False
    ) -> tuple[float, dict[str, float]]:
        """The supplier's disruption score at ``t`` and its parts (the alert's evidence).

        The shared forest (24 us a score) is consulted when it has a weight, or when
        ``forest`` asks for it (an alert's evidence).
        """
        ev: dict[str, float] = {"cusum": round(w.cusum, 2)}
        shares = self._shares(w)
        ev.update({f"{c}_share": round(v, 3) for c, v in shares.items()})
        total = w.cusum
        changed = w.change_at is not None and t - w.change_at <= 2 * DAY_MS
        ev["adwin_change"] = 1.0 if changed else 0.0
        ev["lead_error_z"] = round(w.adwin.estimation, 2)
        if changed:
            total += self.adwin_bonus
        if forest or self.hst_weight > 0:
            hst = self.hst.score_one(shares) if self.hst_n >= 200 else 0.0
            ev["anomaly_score"] = round(hst, 3)
            total += self.hst_weight * max(0.0, hst - 0.5) * 2
        ev["score"] = round(total, 2)
        return total, ev

    @staticmethod
    def _shares(w: SupplierWatch) -> dict[str, float]:
        return {
            c: (min(1.0, b / n) if n > 0.5 else 0.0)
            for c, b, n in zip(CHANNELS, w.recent, w.recent_n, strict=True)
        }

    def corroborating(self, w: SupplierWatch) -> int:
        """Channels whose recent bad share is at least twice their healthy rate."""
        return sum(
            1
            for b, n, p in zip(w.recent, w.recent_n, w.base_rate, strict=True)
            if n >= 3 and b / n >= 2 * p
        )

    # -- episodes -------------------------------------------------------------------------
    def _severity(self, score: float) -> str:
        if score >= 2.5 * self.open_score:
            return "high"
        return "medium" if score >= 1.5 * self.open_score else "low"

    def _evaluate(
        self, supplier: str, w: SupplierWatch, t: int, sku: str | None, store: str | None
    ) -> list[AlertEvent]:
        s, ev = self.score(w, t)
        ep = w.episode
        if ep is None and t >= w.hst_next:
            # The shared forest learns healthy shapes, sampled every 6 hours per supplier:
            # enough for its 100-shape window, and 24 us per learn is not spent per event.
            self.hst.learn_one(self._shares(w))
            self.hst_n += 1
            w.hst_next = t + DAY_MS // 4
        if ep is None:
            if w.closed_at is not None and t < w.closed_at + self.cooldown_ms:
                return []
            if s < self.open_score or self.corroborating(w) < self.min_channels:
                return []
            ep = w.episode = Episode(f"{supplier}-{t}", t, t, self._severity(s), s)
            ep.skus.update([sku] if sku else [])
            ep.stores.update([store] if store else [])
            ep.reported = (ep.severity, len(ep.skus), len(ep.stores))
            return [self._event("open", supplier, ep, t, s, ev)]
        ep.peak_score = max(ep.peak_score, s)
        if s >= self.close_score:
            ep.calm_since = None
        elif ep.calm_since is None:
            ep.calm_since = t
        if ep.calm_since is not None and t - ep.calm_since >= self.close_ms:
            w.episode, w.closed_at = None, t
            return [self._event("closed", supplier, ep, t, s, ev)]
        rank = max(_SEVERITIES.index(ep.severity), _SEVERITIES.index(self._severity(s)))
        sev = _SEVERITIES[rank]
        before = ep.reported
        worse = sev != before[0]
        wider = len(ep.skus) > before[1] or len(ep.stores) > before[2]
        # A rise in severity is news at once; a wider reach, at most once a day.
        if worse or (wider and t - ep.updated_at >= DAY_MS):
            ep.severity, ep.updated_at = sev, t
            ep.reported = (sev, len(ep.skus), len(ep.stores))
            return [self._event("update", supplier, ep, t, s, ev)]
        return []

    def _event(
        self, status: str, supplier: str, ep: Episode, t: int, s: float, ev: dict[str, float]
    ) -> AlertEvent:
        if "anomaly_score" not in ev:  # the forest's view, for the evidence only
            w = self.watches[supplier]
            ev["anomaly_score"] = round(self.hst.score_one(self._shares(w)), 3)
        skus, stores = tuple(sorted(ep.skus)), tuple(sorted(ep.stores))
        return AlertEvent(
            status, ep.alert_id, supplier, ep.severity, t, ep.opened_at, round(s, 2), ev, skus,
            stores,
        )  # fmt: skip

    def tick(self, t: int, supplier: str | None = None) -> list[AlertEvent]:
        """Advance event time for suppliers with an open episode (lets quiet ones close);
        with ``supplier``, for that one only (at its own watermark)."""
        out: list[AlertEvent] = []
        for sup in [supplier] if supplier is not None else list(self.watches):
            w = self.watches.get(sup)
            if w is not None and w.episode is not None:
                w.decay_to(t, self.tau_ms)
                out.extend(self._evaluate(sup, w, t, None, None))
        return out

    def forget(self, supplier: str) -> None:
        """Drop an idle supplier's watch (eviction in event time is the caller's)."""
        self.watches.pop(supplier, None)

    # -- contract hooks -------------------------------------------------------------------
    @classmethod
    def _check_instance(cls) -> DisruptionDetector:
        return cls(open_score=4.0, min_history=5)

    @classmethod
    def _check_samples(cls) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        for i in range(40):
            x = {"supplier": "S1", "t": i * DAY_MS // 3, "kind": "dispatch",
                 "fill": 0.5 if i >= 30 or i % 7 == 0 else 1.0, "sku": "K"}  # fmt: skip
            out.append((x, None))
        return out

    def _check_learn(self, x: Any, y: Any) -> None:
        keys = ("lateness_days", "fill", "delay_days", "promised_days", "sku", "store")
        kw = {k: x[k] for k in keys if k in x}
        self.observe(x.get("supplier", "?"), x.get("t", 0), x.get("kind", "dispatch"), **kw)

    def _check_predict(self, x: Any) -> Any:
        w = self.watches.get(x.get("supplier", "?"))
        if w is None:
            return None
        return (w.episode.alert_id if w.episode else None, round(w.cusum, 6))
