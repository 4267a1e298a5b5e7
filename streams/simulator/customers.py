"""Known customers: heterogeneous purchase rates and silent, BG/NBD-style churn.

Each customer ``i`` has (hidden, recorded in the ground truth):

* a base purchase rate ``rate[i]`` (purchases per day) ~ Gamma(shape r, mean
  1 / mean_days_between_purchases): a few heavy buyers, many occasional ones;
* a dropout probability ``dropout[i]`` ~ Beta(a, b): after every purchase the customer
  leaves for good with this probability (the BG/NBD "geometric dropout"). The churn date is
  the day after that last purchase; from then on the customer neither buys nor visits;
* a home store (weighted by store size) that fulfils all their orders, and channel
  preferences (store / web / app) from a Dirichlet draw.

On day ``d`` an active customer buys with probability ``1 - exp(-rate * F)``, where ``F``
blends the day's store and online calendar factors by the customer's channel preference
(so Black Friday brings more customers and closed stores bring fewer). Customers who sign
up during the run make their first purchase on their sign-up day.

>>> from streams.simulator.config import SimulationConfig
>>> from streams.simulator.world import build_world
>>> cfg = SimulationConfig(customers=3, stores=2, skus=5)
>>> world = build_world(cfg, np.random.default_rng(0))
>>> pop = CustomerPopulation(cfg, world, np.random.default_rng(1))
>>> len(pop), pop.customer_id(0)
(3, 'CU0000001')
"""

from __future__ import annotations

import numpy as np

from streams.simulator.config import SimulationConfig
from streams.simulator.seasons import DayFactors
from streams.simulator.world import World

__all__ = ["CHANNELS", "CustomerPopulation"]

CHANNELS = ("STORE", "WEB", "APP")
_CHANNEL_PRIOR = np.array([8.0, 1.2, 0.8])  # Dirichlet: most customers mostly shop in store


class CustomerPopulation:
    """Column store of every customer known so far; index ``i`` is customer ``CU{i+1}``."""

    def __init__(self, config: SimulationConfig, world: World, rng: np.random.Generator) -> None:
        self._cfg = config
        sizes = np.array([s.size_sqm for s in world.stores])
        self._store_p = sizes / sizes.sum()
        self.join_day = np.zeros(0, dtype=np.int64)
        self.home_store = np.zeros(0, dtype=np.int64)
        self.rate = np.zeros(0)
        self.dropout = np.zeros(0)
        self.channel_p = np.zeros((0, 3))
        self.alive = np.zeros(0, dtype=bool)
        self.churn_day = np.zeros(0, dtype=np.int64)  # -1 = still active
        self.orders = np.zeros(0, dtype=np.int64)
        # Customers known before the start signed up at some point in the past two years.
        self._add(-rng.integers(1, 730, size=config.customers), rng)

    def __len__(self) -> int:
        return len(self.rate)

    @staticmethod
    def customer_id(i: int) -> str:
        return f"CU{i + 1:07d}"

    @staticmethod
    def device_id(i: int, channel: str) -> str:
        """The customer's cookie (web) or device (app) id: their clickstream anonymous_id."""
        return f"{'AW' if channel == 'WEB' else 'AA'}{i + 1:07d}"

    def _add(self, join_day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(join_day)
        cfg = self._cfg
        first = len(self)
        scale = 1.0 / (cfg.mean_days_between_purchases * cfg.purchase_rate_shape)
        rate = rng.gamma(cfg.purchase_rate_shape, scale, size=n)
        a, b = cfg.dropout_beta
        dropout = rng.beta(a, b, size=n) if cfg.customer_churn else np.zeros(n)
        self.join_day = np.concatenate([self.join_day, join_day.astype(np.int64)])
        self.home_store = np.concatenate(
            [self.home_store, rng.choice(len(self._store_p), size=n, p=self._store_p)]
        )
        self.rate = np.concatenate([self.rate, rate])
        self.dropout = np.concatenate([self.dropout, dropout])
        self.channel_p = np.concatenate([self.channel_p, rng.dirichlet(_CHANNEL_PRIOR, size=n)])
        self.alive = np.concatenate([self.alive, np.ones(n, dtype=bool)])
        self.churn_day = np.concatenate([self.churn_day, np.full(n, -1, dtype=np.int64)])
        self.orders = np.concatenate([self.orders, np.zeros(n, dtype=np.int64)])
        return np.arange(first, first + n)

    def arrive(self, day: int, rng: np.random.Generator) -> np.ndarray:
        """Sign up today's new customers; returns their indices."""
        n = int(rng.poisson(self._cfg.new_customers_per_day))
        return self._add(np.full(n, day, dtype=np.int64), rng)

    def _weights(self, f: DayFactors) -> np.ndarray:
        return self.channel_p * np.array([f.store_factor, f.online_factor, f.online_factor])

    def shoppers(
        self, day: int, factors: DayFactors, new: np.ndarray, rng: np.random.Generator
    ) -> list[tuple[int, str]]:
        """(customer, channel) of everyone who buys today, in random order."""
        w = self._weights(factors)
        intensity = w.sum(axis=1)
        p = 1.0 - np.exp(-self.rate * intensity)
        buys = self.alive & (rng.random(len(self)) < p)
        buys[new] = self.alive[new]  # sign-ups buy on their first day
        who = np.flatnonzero(buys & (intensity > 0))
        who = who[rng.permutation(len(who))]
        u = rng.random(len(who))
        cum = np.cumsum(w[who], axis=1)
        chosen = (u[:, None] * cum[:, -1:] > cum).sum(axis=1)
        return [(int(i), CHANNELS[c]) for i, c in zip(who.tolist(), chosen.tolist(), strict=True)]

    def bought(self, i: int, day: int, rng: np.random.Generator) -> None:
        """Record a placed order; the customer may drop out right after it."""
        self.orders[i] += 1
        if rng.random() < self.dropout[i]:
            self.alive[i] = False
            self.churn_day[i] = day + 1

    def browsers(self, factors: DayFactors, rng: np.random.Generator) -> list[int]:
        """Active customers who visit the web shop or app today without buying."""
        rate = self.rate * self._cfg.browse_sessions_per_purchase * factors.online_factor
        visits = self.alive & (rng.random(len(self)) < 1.0 - np.exp(-rate))
        return np.flatnonzero(visits).tolist()

    def online_channel(self, i: int, rng: np.random.Generator) -> str:
        p_web, p_app = self.channel_p[i, 1], self.channel_p[i, 2]
        return "WEB" if rng.random() * (p_web + p_app) < p_web else "APP"
