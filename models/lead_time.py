"""Online lead-time prediction per supplier x SKU, per supplier and globally, with a band.

Two layers, chosen from measurement (docs/supply.md):

1. Per-key running statistics, tiny (a list of 4 floats per key): an exponentially
   weighted mean and variance of the lead time for each supplier x SKU, each supplier and
   overall. A key's mean is shrunk towards its parent's by its count (supplier x SKU ->
   supplier -> global), so a new SKU or supplier starts from its parent and hands over to
   its own history as it accumulates.
2. One shared River model (StandardScaler + LinearRegression, built directly, never
   cloned per key) that learns the residual of that hierarchical mean from the promised
   lead time and the order size, i.e. what the per-key means cannot know.

The band is residual based: each supplier keeps an EW variance of its own errors and the
half-width is ``q * sigma``, where ``q`` is tuned online (adaptive conformal inference) so
the measured coverage tracks ``1 - alpha``.

>>> m = LeadTimeModel(warmup=2)
>>> for i in range(30):
...     _ = m.learn_one({"supplier_id": "S1", "sku": "K1", "promised_days": 7.0}, 8.0)
>>> p = m.predict_one({"supplier_id": "S1", "sku": "K1", "promised_days": 7.0})
>>> round(p.mean), p.level, p.low < p.mean < p.high
(8, 'supplier_sku', True)
>>> m.predict_one({"supplier_id": "NEW", "sku": "K9"}).level
'global'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from river import linear_model, optim, preprocessing

from models.base import OnlineModel

__all__ = ["LeadTimeModel", "LeadTimePrediction"]

# Slots of a key's statistics list.
_N, _MEAN, _VAR, _RES_VAR = range(4)


@dataclass(frozen=True, slots=True)
class LeadTimePrediction:
    """Predicted lead time in days with a ``1 - alpha`` band and the level it came from."""

    mean: float
    low: float
    high: float
    sigma: float  # the supplier's (or global) residual standard deviation, days
    level: str  # supplier_sku | supplier | global


class LeadTimeModel(OnlineModel):
    """Hierarchical EW means + one shared River residual model + an adaptive band."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(
        self,
        *,
        half_life: float = 20.0,
        shrink: float = 3.0,
        alpha: float = 0.1,
        band_lr: float = 0.2,
        warmup: int = 50,
        use_regressor: bool = True,
    ) -> None:
        self.decay = 1.0 - math.log(2) / half_life  # per observation of the key
        self.shrink = shrink  # pseudo-count of the parent in a key's shrunk mean
        self.alpha = alpha
        self.band_lr = band_lr
        self.warmup = warmup
        self.use_regressor = use_regressor
        self.stats: dict[str, list[float]] = {}
        self.q = 1.645  # band half-width in sigmas, adapted online
        self.scaler = preprocessing.StandardScaler()
        self.regressor = linear_model.LinearRegression(
            optimizer=optim.SGD(0.005), intercept_lr=0.005, l2=1e-4
        )
        self.n = 0

    # -- statistics -----------------------------------------------------------------------
    def _update(self, key: str, y: float, residual: float | None) -> None:
        s = self.stats.get(key)
        if s is None:
            self.stats[key] = [1.0, y, 0.0, 0.0 if residual is None else residual**2]
            return
        n = s[_N] + 1.0
        a = max(1.0 - self.decay, 1.0 / n)  # a plain mean first, then exponential weighting
        d = y - s[_MEAN]
        s[_MEAN] += a * d
        s[_VAR] = (1.0 - a) * (s[_VAR] + a * d * d)
        if residual is not None:
            s[_RES_VAR] += a * (residual**2 - s[_RES_VAR])
        s[_N] = n

    def _base(self, supplier: str | None, sku: str | None) -> tuple[float, str]:
        g = self.stats.get("*")
        mean = g[_MEAN] if g else 7.0  # no data at all yet: a week
        level = "global"
        s = self.stats.get(supplier) if supplier else None
        if s:
            w = s[_N] / (s[_N] + self.shrink)
            mean, level = w * s[_MEAN] + (1 - w) * mean, "supplier"
            p = self.stats.get(f"{supplier}|{sku}") if sku else None
            if p:
                w = p[_N] / (p[_N] + self.shrink)
                mean, level = w * p[_MEAN] + (1 - w) * mean, "supplier_sku"
        return mean, level

    def _features(self, x: dict[str, Any], base: float) -> dict[str, float]:
        f = {"base": base}
        promised = x.get("promised_days")
        if promised is not None:
            f["promised"] = float(promised)
            f["promised_gap"] = float(promised) - base
        qty = x.get("quantity")
        if qty is not None:
            f["log_qty"] = math.log1p(max(0.0, float(qty)))
        return f

    def _scaled(self, f: dict[str, float]) -> dict[str, float]:
        # Clipped: a feature that was nearly constant so far must not explode when it moves.
        return {k: max(-5.0, min(5.0, v)) for k, v in self.scaler.transform_one(f).items()}

    def sigma(self, supplier: str | None) -> float:
        """Residual standard deviation (days) of ``supplier``, else the global one."""
        for key in (supplier, "*"):
            s = self.stats.get(key) if key else None
            if s and s[_N] >= 5:
                return max(0.25, math.sqrt(s[_RES_VAR]))
        return 2.0

    # -- public API -----------------------------------------------------------------------
    def predict_one(self, x: dict[str, Any]) -> LeadTimePrediction:
        """``x``: supplier_id, sku, promised_days, quantity (any may be missing)."""
        supplier, sku = x.get("supplier_id"), x.get("sku")
        base, level = self._base(supplier, sku)
        mean = base
        if self.use_regressor and self.n >= self.warmup:
            f = self._scaled(self._features(x, base))
            mean = base + max(-base, min(base, self.regressor.predict_one(f)))
        mean = max(0.0, mean)
        sigma = self.sigma(supplier)
        half = self.q * sigma
        return LeadTimePrediction(
            round(mean, 4),
            round(max(0.0, mean - half), 4),
            round(mean + half, 4),
            round(sigma, 4),
            level,
        )

    def learn_one(self, x: dict[str, Any], y: float) -> float:
        """Learn one observed lead time (days); return its error normalised by sigma."""
        pred = self.predict_one(x)
        residual = y - pred.mean
        supplier, sku = x.get("supplier_id"), x.get("sku")
        if self.use_regressor:
            base, _ = self._base(supplier, sku)
            f = self._features(x, base)
            self.scaler.learn_one(f)
            self.regressor.learn_one(self._scaled(f), y - base)
        miss = 0.0 if pred.low <= y <= pred.high else 1.0
        # A miss widens by band_lr * (1 - alpha) sigmas, a hit narrows by band_lr * alpha:
        # the band settles where misses are an alpha share of the observations.
        self.q = max(0.1, self.q + self.band_lr * (miss - self.alpha))
        self._update("*", y, residual)
        if supplier:
            self._update(supplier, y, residual)
            if sku:
                self._update(f"{supplier}|{sku}", y, None)
        self.n += 1
        return residual / pred.sigma

    def forget(self, supplier: str, sku: str | None = None) -> None:
        """Drop an idle key's statistics (eviction in event time is the caller's)."""
        self.stats.pop(f"{supplier}|{sku}" if sku else supplier, None)

    # -- contract hooks -------------------------------------------------------------------
    @classmethod
    def _check_instance(cls) -> LeadTimeModel:
        return cls(warmup=3)

    @classmethod
    def _check_samples(cls) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        for i in range(12):
            x = {
                "supplier_id": f"S{i % 2}",
                "sku": f"K{i % 3}",
                "promised_days": 7.0,
                "quantity": 10 + i,
            }
            out.append((x, 7.0 + (i % 4)))
        out.append(({"sku": "K1"}, 9.0))
        return out

    def _check_learn(self, x: Any, y: Any) -> None:
        self.learn_one(x, y)

    def _check_predict(self, x: Any) -> Any:
        return self.predict_one(x)
