"""A "popular last week" recommender whose slate lifts what it shows (a feedback loop).

Each day the recommender shows one slate to every web/app visitor: the best sellers of the
trailing window (chain-wide units, all channels) in the first slots and one random on-sale
SKU in the last slot (exploration, which is how new SKUs get a chance). A SKU in slot ``p``
gets online demand multiplied by ``1 + lift[p]``; because those extra sales count toward the
next ranking, yesterday's winners tend to stay on the slate (the feedback loop).

Of the online units a slate SKU sells, a share ``lift / (1 + lift)`` is caused by the slate;
those order lines carry the impression id of the slate the buyer clicked.

>>> r = Recommender((0.5, 0.2), window=7)
>>> r.observe(np.array([5, 0, 9]))
>>> slate = r.slate(1, np.array([True, True, True]), np.random.default_rng(0))
>>> int(slate[0]), float(r.multiplier(3, slate)[int(slate[0])])
(2, 1.5)
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["RECOMMENDER_ID", "Recommender"]

RECOMMENDER_ID = "popular-7d-v1"


class Recommender:
    def __init__(self, lift: tuple[float, ...], window: int) -> None:
        self.lift = np.asarray(lift, dtype=np.float64)
        self._history: deque[np.ndarray] = deque(maxlen=window)

    @property
    def size(self) -> int:
        return len(self.lift)

    def slate(self, day: int, on_sale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """SKU indices of today's slate, slot 0 first (fewer if few SKUs are on sale)."""
        n = len(on_sale)
        sales = np.zeros(n)
        for past in self._history:
            sales[: len(past)] += past
        candidates = np.flatnonzero(on_sale)
        size = min(self.size, len(candidates))
        if size == 0:
            return np.zeros(0, dtype=np.int64)
        # A little noise breaks ties (and shuffles the first day, which has no history).
        score = sales[candidates] + rng.random(len(candidates)) * 0.5
        ranked = candidates[np.argsort(-score, kind="stable")]
        top = ranked[: size - 1] if size > 1 else ranked[:1]
        if size > 1:
            rest = ranked[size - 1 :]
            top = np.concatenate([top, rng.choice(rest, size=1)])
        return top.astype(np.int64)

    def multiplier(self, n_skus: int, slate: np.ndarray) -> np.ndarray:
        """Online demand multiplier per SKU: ``1 + lift[slot]`` on the slate, else 1."""
        mult = np.ones(n_skus)
        mult[slate] += self.lift[: len(slate)]
        return mult

    def observe(self, units_by_sku: np.ndarray) -> None:
        """Feed one day's sold units per SKU (all stores, all channels)."""
        self._history.append(units_by_sku.astype(np.float64))
