"""Who buys the day's order lines: known customers first, then anonymous and guest buyers.

Demand is generated top-down (per SKU x store, see :mod:`streams.simulator.demand`) and
then handed out: each customer who shops today takes a basket of lines from their home
store's pool for the channel they chose (store lines, or online lines the store fulfils).
A customer whose pool is already empty does not buy (no order, no dropout draw). Store
lines nobody took become anonymous store orders (several lines per basket, customer_id
null: shoppers without a loyalty card); online lines nobody took become guest checkouts
(customer_id null, a fresh anonymous id). Every unit sold is on exactly one ORDER_PLACED
line, so order lines add up to the ground truth's ``sold_units``.

>>> _basket_size(np.random.default_rng(0), 1.2) >= 1
True
"""

from __future__ import annotations

import numpy as np

from streams.simulator.config import SimulationConfig
from streams.simulator.customers import CustomerPopulation
from streams.simulator.demand import Line, LinePool
from streams.simulator.events import Ids, SimEvent, sample_times
from streams.simulator.orders import OrderWriter
from streams.simulator.seasons import DayFactors
from streams.simulator.sessions import SessionWriter

__all__ = ["Shop"]

_CUSTOMER_EXTRA_LINES = 1.2  # basket = 1 + Poisson(this) lines
_ANONYMOUS_EXTRA_LINES = 3.5
_GUEST_EXTRA_LINES = 1.0
_MAX_LINES = 40


def _basket_size(rng: np.random.Generator, extra: float) -> int:
    return 1 + min(int(rng.poisson(extra)), _MAX_LINES - 1)


class _Clock:
    """Order times drawn in batches (one profile draw per order would be slow)."""

    def __init__(self, rng: np.random.Generator, start: int, profile: str) -> None:
        self._rng, self._start, self._profile = rng, start, profile
        self._times: list[int] = []

    def __call__(self) -> int:
        if not self._times:
            self._times = sample_times(self._rng, self._start, 256, self._profile)
        return self._times.pop()


class Shop:
    def __init__(
        self,
        config: SimulationConfig,
        ids: Ids,
        customers: CustomerPopulation,
        orders: OrderWriter,
        sessions: SessionWriter,
    ) -> None:
        self._cfg, self._ids = config, ids
        self._customers, self._orders, self._sessions = customers, orders, sessions

    def day(
        self,
        day: int,
        start: int,
        factors: DayFactors,
        store_pools: list[LinePool],
        online_pools: list[LinePool],
        rng_customers: np.random.Generator,
        rng_orders: np.random.Generator,
        rng_sessions: np.random.Generator,
    ) -> list[SimEvent]:
        cust, orders = self._customers, self._orders
        store_clock = _Clock(rng_orders, start, "store")
        online_clock = _Clock(rng_orders, start, "online")
        out: list[SimEvent] = []
        new = cust.arrive(day, rng_customers)
        for i, channel in cust.shoppers(day, factors, new, rng_customers):
            k = int(cust.home_store[i])
            pool = store_pools[k] if channel == "STORE" else online_pools[k]
            basket = pool.take(_basket_size(rng_orders, _CUSTOMER_EXTRA_LINES))
            if not basket:
                continue
            cid = cust.customer_id(i)
            if channel == "STORE":
                out.extend(
                    orders.place(
                        rng_orders, store_clock(), cid, k, "STORE", orders.lines(basket, {})
                    )
                )
            else:
                # Web visitors often browse before logging in; app users stay logged in.
                login = rng_sessions.random() < (0.6 if channel == "WEB" else 0.1)
                anon = cust.device_id(i, channel)
                out.extend(
                    self._online(
                        rng_sessions, rng_orders, online_clock, k, channel, anon, cid, login, basket
                    )
                )
            cust.bought(i, day, rng_customers)
        for k, pool in enumerate(store_pools):
            while len(pool):
                basket = pool.take(_basket_size(rng_orders, _ANONYMOUS_EXTRA_LINES))
                out.extend(
                    orders.place(
                        rng_orders, store_clock(), None, k, "STORE", orders.lines(basket, {})
                    )
                )
        for k, pool in enumerate(online_pools):
            while len(pool):
                basket = pool.take(_basket_size(rng_orders, _GUEST_EXTRA_LINES))
                channel = "WEB" if rng_orders.random() < 0.7 else "APP"
                anon = self._ids.make("AG")
                out.extend(
                    self._online(
                        rng_sessions,
                        rng_orders,
                        online_clock,
                        k,
                        channel,
                        anon,
                        None,
                        False,
                        basket,
                    )
                )
        if self._cfg.clickstream:
            out.extend(self._browsing(factors, rng_customers, rng_sessions))
        return out

    def _online(
        self,
        rng_sessions: np.random.Generator,
        rng_orders: np.random.Generator,
        clock: _Clock,
        store: int,
        channel: str,
        anon: str,
        customer: str | None,
        login: bool,
        basket: list[Line],
    ) -> list[SimEvent]:
        """A web/app order and (with the clickstream on) the session that led to it."""
        if self._cfg.clickstream:
            events, t, impressions = self._sessions.purchase(
                rng_sessions, channel, anon, customer, login, basket
            )
        else:
            events, t, impressions = [], clock(), {}
        lines = self._orders.lines(basket, impressions)
        events.extend(self._orders.place(rng_orders, t, customer, store, channel, lines))
        return events

    def _browsing(
        self,
        factors: DayFactors,
        rng_customers: np.random.Generator,
        rng_sessions: np.random.Generator,
    ) -> list[SimEvent]:
        cust, sessions = self._customers, self._sessions
        out: list[SimEvent] = []
        for i in cust.browsers(factors, rng_customers):
            channel = cust.online_channel(i, rng_sessions)
            login = channel == "APP" or rng_sessions.random() < 0.3
            out.extend(
                sessions.browse(
                    rng_sessions, channel, cust.device_id(i, channel), cust.customer_id(i), login
                )
            )
        # Scaled by the size of the customer base so small worlds stay proportionate.
        rate = self._cfg.anonymous_session_rate * self._cfg.customers * factors.online_factor
        visitors = int(rng_sessions.poisson(rate))
        for _ in range(visitors):
            channel = "WEB" if rng_sessions.random() < 0.75 else "APP"
            out.extend(sessions.browse(rng_sessions, channel, self._ids.make("AV"), None, False))
        return out
