"""Safety stock, reorder point and reorder signals per SKU x store from the demand forecast.

Textbook continuous-review policy (docs/demand.md), vectorised over series::

    mu_L    = sum of the mean forecasts over the lead time (fractional last day pro rata)
    sigma_L = sqrt(sum of daily variances),  sigma_day = (p90 - p10) / (2 * 1.2816)
    SS      = z(service level) * sigma_L          (cycle service level; the newsvendor
    ROP     = mu_L + SS                             critical ratio when set from costs)

Daily errors are treated as independent (a lower bound on sigma_L when errors correlate).
The lead time per SKU x store is learned here from the supplier events (purchase order
created -> shipment received, an exponentially weighted mean) until the supply flow
publishes its own; the configured default applies before any receipt is seen.

A reorder signal fires when an inventory snapshot's position (on hand + on order) is below
the reorder point in force.

>>> import numpy as np
>>> mean = np.full((1, 28), 2.0)
>>> p = reorder_points(mean, mean - 1.2816, mean + 1.2816, np.array([4.0]), 0.95)
>>> float(p.mean_lead[0]), round(float(p.safety[0]), 2), round(float(p.reorder_point[0]), 2)
(8.0, 3.29, 11.29)
>>> lt = LeadTimes(default_days=7.0)
>>> lt.created("PO1", ("K", "S"), 0)
>>> lt.received("PO1", 5 * 86_400_000)
>>> lt.days(("K", "S")), lt.days(("K", "S2"))
(5.0, 7.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = ["LeadTimes", "Policy", "reorder_points", "z_value"]

DAY_MS = 86_400_000
_Z90 = 1.2815515655446004  # the p10..p90 span is 2 * z(0.9) standard deviations


def z_value(service_level: float) -> float:
    if not 0.5 <= service_level < 1.0:
        raise ValueError(f"service level must be in [0.5, 1), got {service_level}")
    return NormalDist().inv_cdf(service_level)


@dataclass(frozen=True)
class Policy:
    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    lead_days: np.ndarray
    mean_lead: np.ndarray  # expected demand over the lead time (units)
    safety: np.ndarray  # safety stock (units)
    reorder_point: np.ndarray  # units


def reorder_points(
    mean: np.ndarray, p10: np.ndarray, p90: np.ndarray, lead_days: np.ndarray, service: float
) -> Policy:
    """Policy for every row of (N, H) forecasts and lead times (N,) in days (capped at H)."""
    hz = mean.shape[1]
    lead = np.clip(lead_days, 0.0, float(hz))
    steps = np.arange(1, hz + 1)[None, :]
    # weight of each forecast day: 1 inside the lead time, the fraction for the last day
    frac = np.clip(lead[:, None] - (steps - 1), 0.0, 1.0)
    sigma_day = np.maximum(p90 - p10, 0.0) / (2.0 * _Z90)
    mean_lead = (mean * frac).sum(axis=1)
    sigma_lead = np.sqrt(((sigma_day * frac) ** 2).sum(axis=1))
    safety = z_value(service) * sigma_lead
    return Policy(lead, mean_lead, safety, mean_lead + safety)


class LeadTimes:
    """Learned lead time per (sku, store) from purchase orders; a default before any."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(self, *, default_days: float = 7.0, alpha: float = 0.3) -> None:
        self.default_days = default_days
        self.alpha = alpha
        self._open: dict[str, tuple[tuple[str, str], int]] = {}  # po id -> (series, created)
        self._lead: dict[tuple[str, str], float] = {}

    def created(self, po_id: str, series: tuple[str, str], t: int) -> None:
        self._open[po_id] = (series, t)

    def received(self, po_id: str, t: int) -> None:
        """The first receipt of a PO gives its lead time (later partial receipts do not)."""
        opened = self._open.pop(po_id, None)
        if opened is None:
            return
        series, t0 = opened
        days = max(0.0, (t - t0) / DAY_MS)
        old = self._lead.get(series)
        self._lead[series] = days if old is None else old + self.alpha * (days - old)

    def forget_before(self, t: int) -> None:
        """Drop POs open since before ``t`` (never received): bounded state."""
        self._open = {k: v for k, v in self._open.items() if v[1] >= t}

    def days(self, series: tuple[str, str]) -> float:
        return self._lead.get(series, self.default_days)
