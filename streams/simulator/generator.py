"""The simulator: one simulated day at a time, every event in event-time order.

Randomness: each mechanism (demand, customers, sessions, supply, ...) draws from its own
generator, seeded from ``SeedSequence(seed, spawn_key=(mechanism, day))``, never from global
state or the clock. So a run depends only on its config; switching a mechanism off does not
reshuffle the others' random numbers (though its effect, on demand say, still changes what
they produce); ``continue_days`` carries on deterministically (its days get the disruption
episodes of the next ``days``-long block).

A day, in order: launches and price changes (00:00), promotions start, the recommendation
slate is chosen, expected demand is computed and drawn, the morning's shipments arrive,
units are sold and split into order lines, customers take their baskets (store, web, app),
the remaining store lines become anonymous store orders and the remaining online lines
guest orders, non-buying sessions happen, then the stock review (purchase orders) and the
end-of-day inventory snapshots. Events scheduled for later days (dispatches, receipts,
delay notices, incidents, returns) wait until their day; events falling after the last
generated day are held back, so ``events()`` never reaches past the simulated period.

>>> from datetime import date
>>> sim = Simulator(SimulationConfig(days=2, skus=5, stores=2, customers=20))
>>> first = next(iter(sim.events()))
>>> first.family, first.event_time == day_ms(date(2024, 11, 1))
('stores', True)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import numpy as np

from streams.simulator.config import SimulationConfig
from streams.simulator.customers import CustomerPopulation
from streams.simulator.demand import DemandDay, LinePool, build_pools, draw_demand, sku_scales
from streams.simulator.disruptions import plan_disruptions, scheduled_disruptions
from streams.simulator.events import Ids, SimEvent, catalog_event, day_ms, store_event
from streams.simulator.orders import OrderWriter
from streams.simulator.pricing import Pricing
from streams.simulator.recommender import Recommender
from streams.simulator.seasons import Calendar, DayFactors
from streams.simulator.sessions import SessionWriter
from streams.simulator.shopping import Shop
from streams.simulator.supply import SupplyChain
from streams.simulator.truth import GroundTruth
from streams.simulator.world import World, build_world, launch_skus

__all__ = ["Simulator"]

# Random stream per mechanism (the first element of the SeedSequence spawn key).
_WORLD, _CALENDAR, _LAUNCH, _PRICING, _RECS, _DEMAND, _POOLS = 0, 1, 2, 3, 4, 5, 6
_CUSTOMERS, _ORDERS, _SESSIONS, _SUPPLY, _DISRUPTION, _SCHEDULED = 7, 8, 9, 10, 11, 12
_LAUNCH_SKUS, _LAUNCH_STOCK = 12, 13
_SETUP = 2**31  # "day" key of the draws made before day 0 (never a real day index)
_STORE_MERGE, _ONLINE_MERGE = 0.6, 0.5  # chance a unit joins the previous unit's line


class Simulator:
    """A seeded simulated retailer; same config, byte-identical event sequence."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self._reset()

    def _rng(self, stream: int, day: int = 0) -> np.random.Generator:
        return np.random.default_rng(
            np.random.SeedSequence(self.config.seed, spawn_key=(stream, day))
        )

    def _reset(self) -> None:
        cfg = self.config
        self._ids = Ids(cfg.seed)
        self._world: World = build_world(cfg, self._rng(_WORLD))
        self._calendar = Calendar(cfg, self._rng(_CALENDAR))
        self._customers = CustomerPopulation(cfg, self._world, self._rng(_CUSTOMERS, _SETUP))
        self._pricing = Pricing(cfg)
        self._recommender = Recommender(cfg.recommendation_lift, cfg.recommendation_window_days)
        self._supply = SupplyChain(cfg, self._world, self._ids)
        self._supply.grow(self._rng(_SUPPLY, _SETUP), launch=False)
        self._orders = OrderWriter(self._world, self._ids)
        self._sessions = SessionWriter(self._world, self._ids, cfg.impression_share)
        self._shop = Shop(cfg, self._ids, self._customers, self._orders, self._sessions)
        self._truth = GroundTruth(
            cfg,
            self._world,
            self._calendar,
            self._customers,
            self._pricing,
            self._supply,
            self._recommender.lift,
        )
        self._pending: dict[int, list[SimEvent]] = {}
        self._factors: DayFactors = self._calendar.day(cfg.start_date)
        self._next_day = 0
        self._planned_blocks = 0

    @property
    def truth(self) -> GroundTruth:
        """Ground truth of the days generated so far."""
        return self._truth

    def events(self) -> Iterator[SimEvent]:
        """The whole backfill (``config.days`` days), in non-decreasing event time.

        Restarts the simulation from day 0 (and resets ``truth``).
        """
        for _, events in self.days():
            yield from events

    def days(self) -> Iterator[tuple[date, list[SimEvent]]]:
        """The backfill grouped per simulated day; restarts from day 0 like ``events``."""
        self._reset()
        for _ in range(self.config.days):
            yield self._step()

    def continue_days(self, n: int) -> Iterator[tuple[date, list[SimEvent]]]:
        """``n`` more days after the last generated one (live mode), same determinism."""
        for _ in range(n):
            yield self._step()

    # -- one day --------------------------------------------------------------------------

    def _step(self) -> tuple[date, list[SimEvent]]:
        cfg = self.config
        day = self._next_day
        self._next_day += 1
        today = cfg.start_date + timedelta(days=day)
        start = day_ms(today)
        out: list[SimEvent] = []
        while self._planned_blocks <= day // cfg.days:  # episodes of each days-long block
            block = self._planned_blocks
            episodes = plan_disruptions(cfg, self._world, block, self._rng(_DISRUPTION, block))
            episodes += scheduled_disruptions(
                cfg, self._world, block, self._rng(_SCHEDULED, block)
            )
            self._supply.add_disruptions(episodes)
            self._planned_blocks += 1
        if day == 0:
            out.extend(self._opening_events(start))
        if cfg.new_skus and day > 0:
            out.extend(self._launches(day, start))
        demand, pools, catalog = self._demand(day, today, start)
        out.extend(catalog)
        out.extend(self._shop.day(day, start, self._factors, *pools, *self._shop_rngs(day)))
        sold = demand.sold_store + demand.sold_online
        self._recommender.observe(sold.sum(axis=1))
        for when, event in self._orders.later:
            self._pending.setdefault(when, []).append(event)
        self._orders.later.clear()
        for when, sku, store, units in self._orders.restock:
            self._supply.add_restock(when, sku, store, units)
        self._orders.restock.clear()
        supply_today, supply_later = self._supply.end_of_day(
            day, start, sold, self._rng(_SUPPLY, day)
        )
        out.extend(supply_today)
        for when, event in supply_later:
            self._pending.setdefault(when, []).append(event)
        out.extend(self._pending.pop(day, []))
        out.sort(key=_event_time)  # stable: world events stay first on day 0
        return today, out

    def _shop_rngs(
        self, day: int
    ) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
        return self._rng(_CUSTOMERS, day), self._rng(_ORDERS, day), self._rng(_SESSIONS, day)

    def _demand(
        self, day: int, today: date, start: int
    ) -> tuple[DemandDay, tuple[list[LinePool], list[LinePool]], list[SimEvent]]:
        """Prices, slate, expected and sold units; the order-line pools; catalog events."""
        cfg, world = self.config, self._world
        factors = self._factors = self._calendar.day(today)
        rng = self._rng(_PRICING, day)
        changes, _ = self._pricing.start_day(day, world.skus, factors, rng, self._ids)
        catalog = [self._catalog(c.sku_idx, "PRICE_CHANGED", start) for c in changes]
        price_factor, promo_lift, discount_rate, promo_ids = self._pricing.factors(day, world.skus)
        if cfg.recommendations:
            slate = self._recommender.slate(day, world.skus.launched(day), self._rng(_RECS, day))
        else:
            slate = np.zeros(0, dtype=np.int64)
        rec_lift = self._recommender.multiplier(len(world.skus), slate)
        scales = sku_scales(world, factors, day, price_factor, promo_lift, rec_lift)
        demand = draw_demand(world, day, *scales, rec_lift, self._rng(_DEMAND, day))
        self._supply.morning(day)  # shipments arrive before the first sale
        demand.sold_store, demand.sold_online = self._supply.fulfil(
            demand.demand_store, demand.demand_online
        )
        self._truth.record_day(demand, factors, price_factor, promo_lift, discount_rate, slate)

        discounts = np.round(world.skus.price * discount_rate, 2).tolist()
        self._orders.set_day(day, start, world.skus.price.tolist(), discounts, promo_ids)
        shown = slate if cfg.clickstream else np.zeros(0, np.int64)
        self._sessions.set_day(start, shown, demand.mu_online.sum(axis=1))
        rec_prob = None
        if cfg.recommendations and cfg.clickstream:
            # Of a slate SKU's online units, lift / (1 + lift) exist because of the slate.
            rec_prob = (rec_lift - 1.0) / rec_lift
        rng = self._rng(_POOLS, day)
        store_pools = build_pools(demand.sold_store, rng, _STORE_MERGE, None)
        online_pools = build_pools(demand.sold_online, rng, _ONLINE_MERGE, rec_prob)
        return demand, (store_pools, online_pools), catalog

    def _opening_events(self, start: int) -> list[SimEvent]:
        world = self._world
        out = [
            store_event(self._ids, start, s.store_id, s.region_id, s.size_sqm, s.timezone)
            for s in world.stores
        ]
        out.extend(self._catalog(s, "SKU_CREATED", start) for s in range(len(world.skus)))
        return out

    def _launches(self, day: int, start: int) -> list[SimEvent]:
        """This week's launches land on random days; SKU_CREATED at 00:00 of the launch day."""
        week, weekday = divmod(day, 7)
        low = 1 if week == 0 else 0  # day 0 is the opening: its SKUs are the initial range
        offsets = self._rng(_LAUNCH, week).integers(low, 7, size=self.config.new_skus_per_week)
        n = int((offsets == weekday).sum())
        if n == 0:
            return []
        new = launch_skus(self._world, n, day, self._rng(_LAUNCH_SKUS, day))
        self._supply.grow(self._rng(_LAUNCH_STOCK, day), launch=True)
        return [self._catalog(int(s), "SKU_CREATED", start) for s in new]

    def _catalog(self, s: int, event_type: str, t: int) -> SimEvent:
        world = self._world
        skus = world.skus
        category = world.categories[int(skus.category[s])]
        return catalog_event(
            self._ids,
            event_type,
            t,
            sku=skus.ids[s],
            name=skus.names[s],
            category_id=category.category_id,
            department_id=category.department_id,
            price=float(skus.price[s]),
            currency=self.config.currency,
            supplier_id=world.suppliers[int(skus.supplier[s])].supplier_id,
            launch_date=day_ms(self.config.start_date + timedelta(days=int(skus.launch_day[s]))),
        )


def _event_time(event: SimEvent) -> int:
    return event.event_time
