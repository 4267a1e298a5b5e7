"""Prices: permanent shelf-price changes and temporary promotions, with their demand effect.

Both act through each SKU's price elasticity ``e`` (negative):

* price factor = (shelf price / launch price) ** e  -- a 10 % increase with e = -2 costs
  about 17 % of demand;
* promotion lift = (1 - discount rate) ** e  -- 25 % off with e = -2 sells 1.78x.

Promotions are chain-wide (every store, every channel), last 7-14 days and never overlap
on one SKU; the discount shows on order lines as ``discount`` per unit and
``promotion_id``. Shelf-price changes are emitted as catalog ``PRICE_CHANGED`` events.

>>> import numpy as np
>>> round(float(promotion_lift(0.25, -2.0)), 3)
1.778
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streams.simulator.config import SimulationConfig
from streams.simulator.events import Ids
from streams.simulator.seasons import DayFactors
from streams.simulator.world import SkuTable

__all__ = ["PriceChange", "Pricing", "Promotion", "promotion_lift"]

_DISCOUNTS = np.array([0.10, 0.15, 0.20, 0.25, 0.30, 0.40])
_DISCOUNT_WEIGHTS = np.array([0.20, 0.20, 0.25, 0.15, 0.12, 0.08])


def promotion_lift(discount_rate: float | np.ndarray, elasticity: float | np.ndarray) -> np.ndarray:
    return np.power(1.0 - np.asarray(discount_rate), np.asarray(elasticity))


@dataclass(frozen=True)
class Promotion:
    promotion_id: str
    sku_idx: int
    start_day: int
    end_day: int  # inclusive
    discount_rate: float
    lift: float  # exact multiplier on expected demand while it runs


@dataclass(frozen=True)
class PriceChange:
    sku_idx: int
    day: int
    old_price: float
    new_price: float


class Pricing:
    """Current promotions and shelf prices; ``factors`` gives the day's demand effects."""

    def __init__(self, config: SimulationConfig) -> None:
        self._cfg = config
        self._promo_end = np.full(0, -1, dtype=np.int64)
        self._promo_rate = np.zeros(0)
        self._promo_idx = np.full(0, -1, dtype=np.int64)  # index into self.promotions
        self.promotions: list[Promotion] = []
        self.price_changes: list[PriceChange] = []

    def _grow(self, n: int) -> None:
        extra = n - len(self._promo_end)
        if extra > 0:
            self._promo_end = np.concatenate([self._promo_end, np.full(extra, -1, dtype=np.int64)])
            self._promo_rate = np.concatenate([self._promo_rate, np.zeros(extra)])
            self._promo_idx = np.concatenate([self._promo_idx, np.full(extra, -1, dtype=np.int64)])

    def start_day(
        self, day: int, skus: SkuTable, factors: DayFactors, rng: np.random.Generator, ids: Ids
    ) -> tuple[list[PriceChange], list[Promotion]]:
        """Apply today's shelf-price changes and start today's promotions."""
        n = len(skus)
        self._grow(n)
        on_sale = skus.launched(day)
        changes: list[PriceChange] = []
        if self._cfg.price_changes:
            # Launch-day SKUs keep their launch price; everything else may be repriced.
            eligible = on_sale & (skus.launch_day < day)
            hit = np.flatnonzero(
                eligible & (rng.random(n) < 1.0 / self._cfg.mean_days_between_price_changes)
            )
            # Mostly small increases (inflation), sometimes cuts; never beyond -20 %/+30 %.
            ratio = np.clip(rng.lognormal(0.015, 0.07, size=len(hit)), 0.8, 1.3)
            for s, r in zip(hit.tolist(), ratio.tolist(), strict=True):
                old = float(skus.price[s])
                new = max(0.99, math.floor(old * r) + 0.99)
                if new != old:
                    skus.price[s] = new
                    changes.append(PriceChange(s, day, old, new))
        started: list[Promotion] = []
        if self._cfg.promotions:
            free = np.flatnonzero(on_sale & (self._promo_end < day))
            count = min(
                int(rng.poisson(self._cfg.promotions_per_week / 7.0 * factors.promo_boost)),
                len(free),
            )
            chosen = rng.choice(free, size=count, replace=False) if count else np.zeros(0, np.int64)
            rates = rng.choice(_DISCOUNTS, size=count, p=_DISCOUNT_WEIGHTS)
            lengths = rng.integers(7, 15, size=count)
            for s, rate, length in zip(
                chosen.tolist(), rates.tolist(), lengths.tolist(), strict=True
            ):
                promo = Promotion(
                    promotion_id=ids.make("PR", 6),
                    sku_idx=s,
                    start_day=day,
                    end_day=day + length - 1,
                    discount_rate=rate,
                    lift=float(promotion_lift(rate, skus.elasticity[s])),
                )
                self._promo_end[s] = promo.end_day
                self._promo_rate[s] = rate
                self._promo_idx[s] = len(self.promotions)
                self.promotions.append(promo)
                started.append(promo)
        self.price_changes.extend(changes)
        return changes, started

    def factors(
        self, day: int, skus: SkuTable
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
        """(price factor, promotion lift, discount rate, promotion id) per SKU for ``day``."""
        self._grow(len(skus))
        price_factor = np.power(skus.price / skus.ref_price, skus.elasticity)
        active = self._promo_end >= day
        rate = np.where(active, self._promo_rate, 0.0)
        lift = np.where(active, promotion_lift(rate, skus.elasticity), 1.0)
        promo_ids: list[str | None] = [
            self.promotions[i].promotion_id if a else None
            for a, i in zip(active.tolist(), self._promo_idx.tolist(), strict=True)
        ]
        return price_factor, lift, rate, promo_ids
