"""Delayed churn labels without leakage, and prequential scores on the matured ones.

A churn score made at event time ``t`` asks "will this customer go ``horizon`` without
buying?". Its answer is known only later, so the score's inputs are kept as a *pending
snapshot* and labelled when (and only when) the answer exists:

* the customer places an order at ``t2`` with ``t < t2 <= t + horizon``: **not churned**,
  decided at ``t2`` (and by default released to the learner at ``t + horizon``, see
  :class:`LabelQueue`);
* the event-time watermark (the largest event time seen, less ``lateness``) reaches
  ``t + horizon`` with no order: **churned**, labelled then.

Nothing reads the wall clock, so a replay labels the same snapshots in the same order. A
customer keeps at most one pending snapshot per ``snapshot_every`` of event time (so at
most ``horizon / snapshot_every + 1`` of them), which bounds memory for busy customers.

:class:`PrequentialMetrics` scores the prediction each snapshot carried (made before its
label existed, i.e. test-then-train): AUC from a fine histogram, log loss, and reliability
bins with the expected calibration error.

>>> q = LabelQueue(horizon_ms=90, snapshot_every_ms=10, release="purchase")
>>> q.offer("A", 0, (1.0,), 0.2), q.offer("A", 5, (1.0,), 0.2), q.offer("B", 0, (2.0,), 0.7)
(True, False, True)
>>> q.advance(89)
[]
>>> [(lab.customer, lab.churned) for lab in q.purchase("A", 50)]
[('A', False)]
>>> [(lab.customer, lab.churned, lab.labelled_at) for lab in q.advance(90)]
[('B', True, 90)]
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass
from typing import Any

from processors.sequencer import ReorderBuffer  # moved; re-exported for old imports

__all__ = ["Label", "LabelQueue", "PrequentialMetrics", "ReorderBuffer"]


@dataclass(frozen=True, slots=True)
class Label:
    """A matured snapshot: the inputs at ``scored_at``, the score then, and the outcome."""

    customer: str
    scored_at: int
    features: object  # whatever the scorer kept (the flow keeps packed float32 bytes)
    risk: float
    churned: bool
    labelled_at: int


class LabelQueue:
    """Pending snapshots per customer, matured by purchases and by the event-time watermark.

    ``release="horizon"`` (the default) decides a not-churned label at the purchase but
    hands it out only when its horizon has passed, like a churned one: labels then leave in
    the order their scores were made, so the class balance the learner sees does not swing
    (with ``"purchase"`` the first ``horizon`` of a run yields only not-churned labels and
    the churned ones arrive later in a burst, which misleads SGD).
    """

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(
        self,
        horizon_ms: int,
        snapshot_every_ms: int,
        lateness_ms: int = 0,
        release: str = "horizon",
    ) -> None:
        if horizon_ms <= 0 or snapshot_every_ms <= 0 or lateness_ms < 0:
            raise ValueError("horizon and snapshot interval must be > 0, lateness >= 0")
        if release not in ("horizon", "purchase"):
            raise ValueError("release must be 'horizon' or 'purchase'")
        self.horizon = horizon_ms
        self.every = snapshot_every_ms
        self.lateness = lateness_ms
        self.at_purchase = release == "purchase"
        self.watermark = -(2**62)
        # customer -> [[scored_at, features, risk, bought_at or -1], ...] in time order
        self.pending: dict[str, list[list[Any]]] = {}
        self._due: list[tuple[int, str, int]] = []  # (due ms, customer, scored_at)
        self.size = 0  # pending snapshots, all customers

    def __len__(self) -> int:
        return self.size

    def offer(self, customer: str, t: int, features: object, risk: float) -> bool:
        """Keep a snapshot of a score made at ``t`` unless a recent one is pending already."""
        snaps = self.pending.get(customer)
        if snaps and t - snaps[-1][0] < self.every:
            return False
        if snaps is None:
            snaps = self.pending[customer] = []
        snaps.append([t, features, risk, -1])
        self.size += 1
        heapq.heappush(self._due, (t + self.horizon, customer, t))
        return True

    def purchase(self, customer: str, t: int) -> list[Label]:
        """``customer`` ordered at ``t``: earlier pending snapshots are not churned.

        Returns the labels released now (none unless ``release="purchase"``).
        """
        snaps = self.pending.get(customer)
        if not snaps:
            return []
        for snap in snaps:
            if snap[0] < t and snap[3] < 0 and t <= snap[0] + self.horizon:
                snap[3] = t
        if not self.at_purchase:
            return []
        done = [s for s in snaps if s[3] >= 0]
        rest = [s for s in snaps if s[3] < 0]
        if rest:
            self.pending[customer] = rest
        else:
            del self.pending[customer]
        self.size -= len(done)
        return [Label(customer, s, f, r, False, b) for s, f, r, b in done]

    def advance(self, now: int) -> list[Label]:
        """Move the watermark to ``now - lateness``; release snapshots whose horizon passed."""
        self.watermark = max(self.watermark, now - self.lateness)
        out: list[Label] = []
        while self._due and self._due[0][0] <= self.watermark:
            due, customer, scored_at = heapq.heappop(self._due)
            snaps = self.pending.get(customer)
            if not snaps or snaps[0][0] != scored_at:  # released at a purchase already
                continue
            _, features, risk, bought = snaps.pop(0)
            self.size -= 1
            if not snaps:
                del self.pending[customer]
            out.append(Label(customer, scored_at, features, risk, bought < 0, due))
        return out


class PrequentialMetrics:
    """AUC, log loss and reliability of predictions made before their labels were known.

    >>> m = PrequentialMetrics()
    >>> for p, y in [(0.9, True), (0.8, True), (0.3, False), (0.2, False), (0.6, False)]:
    ...     m.update(p, y)
    >>> m.auc(), round(m.log_loss(), 3), m.n
    (1.0, 0.365, 5)
    """

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(self, fine_bins: int = 200, reliability_bins: int = 10) -> None:
        self.fine = fine_bins
        self.coarse = reliability_bins
        self.pos = [0] * fine_bins
        self.neg = [0] * fine_bins
        self.bin_n = [0] * reliability_bins
        self.bin_p = [0.0] * reliability_bins
        self.bin_y = [0] * reliability_bins
        self.n = 0
        self.loss = 0.0

    def update(self, p: float, churned: bool) -> None:
        if not math.isfinite(p):
            return
        p = min(1.0, max(0.0, p))
        i = min(self.fine - 1, int(p * self.fine))
        (self.pos if churned else self.neg)[i] += 1
        j = min(self.coarse - 1, int(p * self.coarse))
        self.bin_n[j] += 1
        self.bin_p[j] += p
        self.bin_y[j] += churned
        q = min(1.0 - 1e-7, max(1e-7, p))
        self.loss -= math.log(q) if churned else math.log(1.0 - q)
        self.n += 1

    def auc(self) -> float:
        """P(a churner scores above a non-churner); ties within a fine bin count half."""
        total_pos, total_neg = sum(self.pos), sum(self.neg)
        if not total_pos or not total_neg:
            return float("nan")
        below = 0  # negatives in lower bins
        wins = 0.0
        for p, n in zip(self.pos, self.neg, strict=True):
            wins += p * (below + 0.5 * n)
            below += n
        return wins / (total_pos * total_neg)

    def log_loss(self) -> float:
        return self.loss / self.n if self.n else float("nan")

    def reliability(self) -> list[tuple[float, float, int]]:
        """(mean predicted, observed churn rate, count) per non-empty coarse bin."""
        return [(self.bin_p[j] / n, self.bin_y[j] / n, n) for j, n in enumerate(self.bin_n) if n]

    def ece(self) -> float:
        """Expected calibration error: count-weighted |predicted - observed| over bins."""
        if not self.n:
            return float("nan")
        return sum(abs(p - y) * n for p, y, n in self.reliability()) / self.n

    def fields(self) -> dict[str, str | int | float]:
        """The metrics as Redis hash fields (NaN as an empty string)."""

        def num(v: float) -> float | str:
            return round(v, 6) if math.isfinite(v) else ""

        return {
            "labels": self.n,
            "churned": sum(self.pos),
            "auc": num(self.auc()),
            "log_loss": num(self.log_loss()),
            "ece": num(self.ece()),
            "reliability": json.dumps(
                [[round(p, 4), round(y, 4), n] for p, y, n in self.reliability()]
            ),
        }
