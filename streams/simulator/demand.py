"""Expected demand per SKU x store x day, its Poisson draw, and the split into order lines.

For SKU ``s`` in store ``k`` on day ``d`` (all vectorised over SKU x store)::

    mu_store[s, k]  = base[s, k] * (1 - online_share) * weekday_store[d] * holiday_store[d]
                      * yearly[dept(s), d] * price_factor[s, d] * promo_lift[s, d] * ramp[s, d]
    mu_online[s, k] = base[s, k] * online_share * weekday_online[d] * holiday_online[d]
                      * yearly[dept(s), d] * price_factor[s, d] * promo_lift[s, d] * ramp[s, d]
                      * rec_lift[s, d]

Units sold are independent Poisson draws of both means (so their sum is Poisson with mean
``mu_store + mu_online``, the ground truth's ``expected_units``). Slow SKUs have many zero
days: intermittent demand. ``ramp = 1 - exp(-(age + 1) / tau)`` for SKUs launched during
the run (cold start), 1 for SKUs on sale before it.

The per-SKU part is computed first (``store_scale``, ``online_scale``) and multiplied into
``base`` last, so the ground truth can store one vector per day and rebuild the means
bit-for-bit.

>>> pools = build_pools(np.array([[3, 0], [1, 2]]), np.random.default_rng(1), 0.0, None)
>>> sorted(pools[0].rest()), sorted(pools[1].rest())
([(0, 1, False), (0, 1, False), (0, 1, False), (1, 1, False)], [(1, 1, False), (1, 1, False)])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streams.simulator.seasons import DayFactors
from streams.simulator.world import World

__all__ = ["DemandDay", "LinePool", "build_pools", "draw_demand", "sku_scales"]

Line = tuple[int, int, bool]  # (sku index, quantity, caused by the recommendation slate)


@dataclass
class DemandDay:
    """One day's demand: per-SKU scales, means, draws and what was actually sold."""

    day: int
    store_scale: np.ndarray  # (n_sku,) mu_store = base * store_scale[:, None]
    online_scale: np.ndarray  # (n_sku,)
    mu_store: np.ndarray  # (n_sku, n_store)
    mu_online: np.ndarray
    demand_store: np.ndarray  # Poisson draws, int64
    demand_online: np.ndarray
    sold_store: np.ndarray  # == demand unless lost_sales caps it by stock
    sold_online: np.ndarray
    ramp: np.ndarray  # (n_sku,)
    rec_lift: np.ndarray  # (n_sku,)


def sku_scales(
    world: World,
    factors: DayFactors,
    day: int,
    price_factor: np.ndarray,
    promo_lift: np.ndarray,
    rec_lift: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(store scale, online scale, ramp) per SKU for ``day``."""
    skus, share = world.skus, world.config.online_share
    age = (day - skus.launch_day).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ramp = np.where(skus.ramp_days > 0, 1.0 - np.exp(-(age + 1.0) / skus.ramp_days), 1.0)
    ramp = np.where(skus.launched(day), ramp, 0.0)
    common = factors.yearly[skus.department] * price_factor * promo_lift * ramp
    store = ((1.0 - share) * factors.weekday_store * factors.holiday_store) * common
    online = (share * factors.weekday_online * factors.holiday_online) * common * rec_lift
    return store, online, ramp


def draw_demand(
    world: World,
    day: int,
    store_scale: np.ndarray,
    online_scale: np.ndarray,
    ramp: np.ndarray,
    rec_lift: np.ndarray,
    rng: np.random.Generator,
) -> DemandDay:
    base = world.skus.base
    mu_store = base * store_scale[:, None]
    mu_online = base * online_scale[:, None]
    demand_store = rng.poisson(mu_store)
    demand_online = rng.poisson(mu_online)
    return DemandDay(
        day,
        store_scale,
        online_scale,
        mu_store,
        mu_online,
        demand_store,
        demand_online,
        demand_store,
        demand_online,
        ramp,
        rec_lift,
    )


@dataclass
class LinePool:
    """Shuffled order lines of one store and channel group; baskets take from the front."""

    sku: list[int] = field(default_factory=list)
    qty: list[int] = field(default_factory=list)
    rec: list[bool] = field(default_factory=list)
    pos: int = 0

    def __len__(self) -> int:
        return len(self.sku) - self.pos

    def take(self, n: int) -> list[Line]:
        end = min(self.pos + n, len(self.sku))
        out = list(
            zip(
                self.sku[self.pos : end],
                self.qty[self.pos : end],
                self.rec[self.pos : end],
                strict=True,
            )
        )
        self.pos = end
        return out

    def rest(self) -> list[Line]:
        return self.take(len(self))


def build_pools(
    units: np.ndarray, rng: np.random.Generator, merge_p: float, rec_prob: np.ndarray | None
) -> list[LinePool]:
    """Split sold units (SKU x store) into shuffled order lines, one pool per store.

    Units of one SKU in one store become lines whose quantity is geometric-like: each unit
    joins the previous line with probability ``merge_p``. ``rec_prob[s]`` is the chance a
    line of SKU ``s`` was caused by the recommendation slate.
    """
    n_sku, n_store = units.shape
    flat = np.ascontiguousarray(units.T).ravel()  # store-major: cell = store * n_sku + sku
    cells = np.flatnonzero(flat)
    unit_cell = np.repeat(cells, flat[cells])
    n_units = len(unit_cell)
    pools = [LinePool() for _ in range(n_store)]
    if n_units == 0:
        return pools
    new_line = np.ones(n_units, dtype=bool)
    if n_units > 1:
        new_line[1:] = (unit_cell[1:] != unit_cell[:-1]) | (rng.random(n_units - 1) >= merge_p)
    line_cell = unit_cell[new_line]
    qty = np.bincount(np.cumsum(new_line) - 1)
    store, sku = line_cell // n_sku, line_cell % n_sku
    if rec_prob is not None:
        rec = rng.random(len(sku)) < rec_prob[sku]
    else:
        rec = np.zeros(len(sku), dtype=bool)
    order = np.lexsort((rng.random(len(sku)), store))  # shuffle within each store
    store, sku, qty, rec = store[order], sku[order], qty[order], rec[order]
    bounds = np.searchsorted(store, np.arange(n_store + 1))
    for k in range(n_store):
        lo, hi = bounds[k], bounds[k + 1]
        pools[k] = LinePool(sku[lo:hi].tolist(), qty[lo:hi].tolist(), rec[lo:hi].tolist())
    return pools
