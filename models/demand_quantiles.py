"""Forecast quantiles from the model's own recent errors (docs/demand.md, "Uncertainty")."""

from __future__ import annotations

import numpy as np

__all__ = ["ResidualQuantiles"]


class ResidualQuantiles:
    """Quantiles from the model's own recent errors, per (level, horizon bucket, rate bin).

    Residuals are scaled by the Poisson standard deviation, ``r = (y - mu) / sqrt(mu)``,
    and kept in a ring of the last ``window`` per bucket; the forecast quantile is
    ``max(0, mu + q_r * sqrt(mu))``. Binning by the forecast rate keeps the skew of slow
    movers (mostly zeros) apart from the near-normal errors of busy series.

    Online calibration (adaptive conformal style): per (level, horizon bucket), a width
    factor ``w`` stretches the quantiles around the median; each batch of matured
    forecasts moves ``log w`` by ``gamma * (miss rate - target miss rate)`` of the outer
    interval. Errors of aggregates at long horizons are autocorrelated (a level that lags
    stays wrong for weeks), so the pooled residuals alone gave intervals too narrow there
    (coverage 0.66-0.70) and too wide at h1 (0.84-0.89).
    """

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 2  # 2: width factors (online calibration)

    EDGES = np.array([0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0])

    def __init__(
        self, probs: tuple[float, ...] = (0.1, 0.5, 0.9), window: int = 2000, gamma: float = 0.02
    ) -> None:
        self.probs = probs
        self.window = window
        self.gamma = gamma
        self._width: dict[tuple[str, int], float] = {}
        self._rings: dict[tuple[str, int, int], np.ndarray] = {}
        self._fill: dict[tuple[str, int, int], int] = {}
        self._tables: dict[tuple[str, int], np.ndarray] = {}

    def add(self, level: str, bucket: int, mu: np.ndarray, y: np.ndarray) -> None:
        mu = np.maximum(mu, 1e-6)
        r = (y - mu) / np.sqrt(mu)
        bins = np.digitize(mu, self.EDGES)
        if self.gamma > 0.0 and len(r) and len(self.probs) > 1:
            table = self._table(level, bucket)
            lo, hi = int(np.argmin(self.probs)), int(np.argmax(self.probs))
            miss = float(np.mean((r < table[bins, lo]) | (r > table[bins, hi])))
            target = 1.0 - (self.probs[hi] - self.probs[lo])
            w = self._width.get((level, bucket), 1.0) * np.exp(self.gamma * (miss - target))
            self._width[(level, bucket)] = float(np.clip(w, 0.25, 4.0))
        for b in np.unique(bins):
            vals = r[bins == b][-self.window :]
            key = (level, bucket, int(b))
            ring = self._rings.get(key)
            if ring is None:
                ring = self._rings[key] = np.zeros(self.window)
            pos = self._fill.get(key, 0)
            idx = (pos + np.arange(len(vals))) % self.window
            ring[idx] = vals
            self._fill[key] = pos + len(vals)
        self._tables.pop((level, bucket), None)

    def _table(self, level: str, bucket: int) -> np.ndarray:
        table = self._tables.get((level, bucket))
        if table is None:
            z = {0.1: -1.2816, 0.5: 0.0, 0.9: 1.2816}  # normal approximation until data
            table = np.array([[z.get(p, 0.0) for p in self.probs]] * (len(self.EDGES) + 1))
            for b in range(len(self.EDGES) + 1):
                n = min(self._fill.get((level, bucket, b), 0), self.window)
                if n >= 30:
                    table[b] = np.quantile(self._rings[(level, bucket, b)][:n], self.probs)
            w = self._width.get((level, bucket), 1.0)
            if w != 1.0:
                mid = table[:, [self.probs.index(0.5)]] if 0.5 in self.probs else 0.0
                table = mid + w * (table - mid)
            self._tables[(level, bucket)] = table
        return table

    def quantiles(self, level: str, buckets: np.ndarray, mu: np.ndarray) -> list[np.ndarray]:
        """Quantile arrays (one per prob) for forecasts ``mu`` of shape (n, H).

        ``buckets[h]`` is the horizon bucket of column h.
        """
        bins = np.digitize(mu, self.EDGES)
        scale = np.sqrt(np.maximum(mu, 0.0))
        out = [np.empty_like(mu) for _ in self.probs]
        for bucket in np.unique(buckets):
            cols = buckets == bucket
            table = self._table(level, int(bucket))
            for j in range(len(self.probs)):
                q = mu[:, cols] + table[bins[:, cols], j] * scale[:, cols]
                out[j][:, cols] = np.maximum(q, 0.0)
        return out
