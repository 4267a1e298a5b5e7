"""Ground truth: the hidden quantities behind the events, for scoring models against.

Filled in day by day while the simulator runs. Per-day demand is stored compactly (one
scale vector per channel, see :mod:`streams.simulator.demand`, and the non-zero draws) and
expanded into long tables on request, so the expected units are exactly the Poisson means
the generator sampled from.

>>> from streams.simulator import SimulationConfig, Simulator
>>> sim = Simulator(SimulationConfig(days=3, skus=5, stores=2, customers=20, new_skus_per_week=0))
>>> _ = list(sim.events())
>>> frame = sim.truth.demand_frame()
>>> len(frame), bool((frame.expected_units > 0).all())
(30, True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from streams.simulator.config import SimulationConfig
from streams.simulator.demand import DemandDay
from streams.simulator.seasons import Calendar, DayFactors
from streams.simulator.supply import PurchaseOrder

if TYPE_CHECKING:
    from streams.simulator.customers import CustomerPopulation
    from streams.simulator.pricing import Pricing
    from streams.simulator.supply import SupplyChain
    from streams.simulator.world import World

__all__ = ["DayTruth", "GroundTruth"]


def _sparse(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = a.ravel()
    idx = np.flatnonzero(flat)
    return idx.astype(np.int32), flat[idx].astype(np.int32)


@dataclass(frozen=True)
class DayTruth:
    """Everything hidden about one simulated day (SKU vectors cover SKUs on sale then)."""

    day: int
    date: date
    n_sku: int
    store_scale: np.ndarray
    online_scale: np.ndarray
    demand: tuple[np.ndarray, np.ndarray]  # sparse (flat index, units) of the Poisson draws
    sold: tuple[np.ndarray, np.ndarray]  # store + online units sold
    sold_online: tuple[np.ndarray, np.ndarray]
    price: np.ndarray
    price_factor: np.ndarray
    promotion_lift: np.ndarray
    discount_rate: np.ndarray
    ramp: np.ndarray
    recommendation_lift: np.ndarray
    slate: np.ndarray  # SKU index per slot
    factors: DayFactors


class GroundTruth:
    """Hidden parameters and per-day truth of one simulation run (frames are pandas)."""

    def __init__(
        self,
        config: SimulationConfig,
        world: World,
        calendar: Calendar,
        customers: CustomerPopulation,
        pricing: Pricing,
        supply: SupplyChain,
        slot_lift: np.ndarray,
    ) -> None:
        self.config = config
        self.world, self.calendar, self.customers = world, calendar, customers
        self.pricing, self.supply = pricing, supply
        self.slot_lift = slot_lift
        self.days: list[DayTruth] = []

    # -- recording (called by the generator) ----------------------------------------------

    def record_day(
        self,
        demand: DemandDay,
        factors: DayFactors,
        price_factor: np.ndarray,
        promotion_lift: np.ndarray,
        discount_rate: np.ndarray,
        slate: np.ndarray,
    ) -> None:
        sold = demand.sold_store + demand.sold_online
        self.days.append(
            DayTruth(
                day=demand.day,
                date=factors.date,
                n_sku=len(demand.store_scale),
                store_scale=demand.store_scale,
                online_scale=demand.online_scale,
                demand=_sparse(demand.demand_store + demand.demand_online),
                sold=_sparse(sold),
                sold_online=_sparse(demand.sold_online),
                price=self.world.skus.price.copy(),
                price_factor=price_factor,
                promotion_lift=promotion_lift,
                discount_rate=discount_rate,
                ramp=demand.ramp,
                recommendation_lift=demand.rec_lift,
                slate=slate.copy(),
                factors=factors,
            )
        )

    # -- helpers --------------------------------------------------------------------------

    def _date(self, day: np.ndarray | int) -> np.ndarray:
        return np.datetime64(self.config.start_date, "D") + np.asarray(day, dtype="timedelta64[D]")

    def date_of(self, day: int) -> date:
        return self.config.start_date + timedelta(days=day)

    @property
    def holidays(self) -> dict[date, str]:
        """Holiday calendar used: date -> name, for every simulated day with an effect."""
        return {d.date: d.factors.holiday_name for d in self.days if d.factors.holiday_name}

    # -- frames ---------------------------------------------------------------------------

    def demand_frame(self) -> pd.DataFrame:
        """One row per SKU x store x day: expected units (the Poisson means) and draws."""
        skus, stores = self.world.skus, self.world.stores
        n_store = len(stores)
        parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("day", "sku", "store", "mu_s", "mu_o", "dem", "sold", "on")
        }
        for d in self.days:
            base = skus.base[: d.n_sku]
            cells = d.n_sku * n_store
            parts["day"].append(np.full(cells, d.day))
            parts["sku"].append(np.repeat(np.arange(d.n_sku), n_store))
            parts["store"].append(np.tile(np.arange(n_store), d.n_sku))
            parts["mu_s"].append((base * d.store_scale[:, None]).ravel())
            parts["mu_o"].append((base * d.online_scale[:, None]).ravel())
            for key, (idx, val) in (("dem", d.demand), ("sold", d.sold), ("on", d.sold_online)):
                dense = np.zeros(cells, dtype=np.int64)
                dense[idx] = val
                parts[key].append(dense)
        cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
        mu_s, mu_o = cat["mu_s"], cat["mu_o"]
        sku_ids = np.array(skus.ids, dtype=object)
        store_ids = np.array([s.store_id for s in stores], dtype=object)
        return pd.DataFrame(
            {
                "date": self._date(cat["day"].astype(np.int64)),
                "sku": sku_ids[cat["sku"].astype(np.int64)] if len(sku_ids) else [],
                "store_id": store_ids[cat["store"].astype(np.int64)],
                "expected_units": mu_s + mu_o,
                "expected_store_units": mu_s,
                "expected_online_units": mu_o,
                "demand_units": cat["dem"].astype(np.int64),
                "sold_units": cat["sold"].astype(np.int64),
                "sold_online_units": cat["on"].astype(np.int64),
            }
        )

    def sku_day_frame(self) -> pd.DataFrame:
        """One row per SKU x day: price and the multiplicative demand components."""
        rows = []
        for d in self.days:
            n = d.n_sku
            rows.append(
                pd.DataFrame(
                    {
                        "date": self._date(np.full(n, d.day)),
                        "sku": self.world.skus.ids[:n],
                        "price": d.price[:n],
                        "price_factor": d.price_factor,
                        "promotion_lift": d.promotion_lift,
                        "discount_rate": d.discount_rate,
                        "ramp": d.ramp,
                        "recommendation_lift": d.recommendation_lift,
                        "yearly_factor": d.factors.yearly[self.world.skus.department[:n]],
                    }
                )
            )
        return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()

    def calendar_frame(self) -> pd.DataFrame:
        """One row per day: weekly and holiday factors (stores and online)."""
        return pd.DataFrame(
            {
                "date": self._date(np.array([d.day for d in self.days], dtype=np.int64)),
                "weekday": [d.date.strftime("%a") for d in self.days],
                "weekday_store_factor": [d.factors.weekday_store for d in self.days],
                "weekday_online_factor": [d.factors.weekday_online for d in self.days],
                "holiday_name": [d.factors.holiday_name for d in self.days],
                "holiday_store_factor": [d.factors.holiday_store for d in self.days],
                "holiday_online_factor": [d.factors.holiday_online for d in self.days],
                "stores_closed": [d.factors.store_closed for d in self.days],
                "promotion_boost": [d.factors.promo_boost for d in self.days],
                "public_holiday": [
                    self.calendar.public_holidays(d.date.year).get(d.date) for d in self.days
                ],
            }
        )

    def seasonality_frame(self) -> pd.DataFrame:
        """One row per department x day: the yearly factor."""
        depts = self.world.department_ids
        return pd.DataFrame(
            {
                "date": self._date(
                    np.repeat([d.day for d in self.days], len(depts)).astype(np.int64)
                ),
                "department_id": depts * len(self.days),
                "yearly_factor": np.concatenate([d.factors.yearly for d in self.days])
                if self.days
                else [],
            }
        )

    def customer_frame(self) -> pd.DataFrame:
        """One row per customer: hidden rates, churn date (NaT = still active), orders."""
        c = self.customers
        n = len(c)
        churn = np.where(c.churn_day >= 0, c.churn_day, 0)
        return pd.DataFrame(
            {
                "customer_id": [c.customer_id(i) for i in range(n)],
                "join_date": self._date(c.join_day),
                "home_store_id": [self.world.stores[k].store_id for k in c.home_store.tolist()],
                "purchase_rate_per_day": c.rate,
                "dropout_probability": c.dropout,
                "p_store": c.channel_p[:, 0],
                "p_web": c.channel_p[:, 1],
                "p_app": c.channel_p[:, 2],
                "churn_date": pd.Series(self._date(churn)).where(c.churn_day >= 0),
                "orders_placed": c.orders,
                "web_anonymous_id": [c.device_id(i, "WEB") for i in range(n)],
                "app_anonymous_id": [c.device_id(i, "APP") for i in range(n)],
            }
        )

    def sku_frame(self) -> pd.DataFrame:
        """One row per SKU: hierarchy, supplier, tier, launch, elasticity, base rate."""
        w, s = self.world, self.world.skus
        return pd.DataFrame(
            {
                "sku": s.ids,
                "name": s.names,
                "department_id": [w.department_ids[d] for d in s.department.tolist()],
                "category_id": [w.categories[c].category_id for c in s.category.tolist()],
                "supplier_id": [w.suppliers[j].supplier_id for j in s.supplier.tolist()],
                "price_tier": s.tiers,
                "launch_date": self._date(s.launch_day),
                "launched_during_run": s.ramp_days > 0,
                "launch_price": s.ref_price,
                "current_price": s.price,
                "popularity": s.popularity,
                "elasticity": s.elasticity,
                "ramp_days": s.ramp_days,
                "base_units_per_day": s.base.sum(axis=1),
            }
        )

    def base_frame(self) -> pd.DataFrame:
        """One row per SKU x store: base units/day before every calendar and price effect."""
        s, stores = self.world.skus, self.world.stores
        return pd.DataFrame(
            {
                "sku": np.repeat(np.array(s.ids, dtype=object), len(stores)),
                "store_id": [st.store_id for st in stores] * len(s),
                "base_units": s.base.ravel(),
            }
        )

    def store_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                (s.store_id, s.region_id, s.size_sqm, s.demand_factor, s.timezone)
                for s in self.world.stores
            ],
            columns=["store_id", "region_id", "size_sqm", "demand_factor", "timezone"],
        )

    def supplier_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                (
                    s.supplier_id,
                    s.mean_lead_days,
                    s.lead_shape,
                    s.committed_lead_days,
                    s.fill_rate,
                    s.incident_rate,
                )
                for s in self.world.suppliers
            ],
            columns=[
                "supplier_id",
                "mean_lead_days",
                "lead_shape",
                "committed_lead_days",
                "fill_rate",
                "incident_rate",
            ],
        )

    def disruption_frame(self) -> pd.DataFrame:
        eps = self.supply.disruptions
        return pd.DataFrame(
            {
                "episode_id": [e.episode_id for e in eps],
                "supplier_id": [e.supplier_id for e in eps],
                "start_date": self._date(np.array([e.start_day for e in eps], dtype=np.int64)),
                "end_date": self._date(np.array([e.end_day for e in eps], dtype=np.int64)),
                "lead_multiplier": [e.lead_multiplier for e in eps],
                "fill_factor": [e.fill_factor for e in eps],
                "reason": [e.reason for e in eps],
            }
        )

    def promotion_frame(self) -> pd.DataFrame:
        ps, ids = self.pricing.promotions, self.world.skus.ids
        return pd.DataFrame(
            {
                "promotion_id": [p.promotion_id for p in ps],
                "sku": [ids[p.sku_idx] for p in ps],
                "start_date": self._date(np.array([p.start_day for p in ps], dtype=np.int64)),
                "end_date": self._date(np.array([p.end_day for p in ps], dtype=np.int64)),
                "discount_rate": [p.discount_rate for p in ps],
                "lift": [p.lift for p in ps],
            }
        )

    def price_change_frame(self) -> pd.DataFrame:
        pcs, ids = self.pricing.price_changes, self.world.skus.ids
        return pd.DataFrame(
            {
                "date": self._date(np.array([p.day for p in pcs], dtype=np.int64)),
                "sku": [ids[p.sku_idx] for p in pcs],
                "old_price": [p.old_price for p in pcs],
                "new_price": [p.new_price for p in pcs],
            }
        )

    def recommendation_frame(self) -> pd.DataFrame:
        """One row per day x slate slot: the SKU shown and its true online-demand lift."""
        rows = [
            (d.day, self.world.skus.ids[s], pos, float(self.slot_lift[pos]))
            for d in self.days
            for pos, s in enumerate(d.slate.tolist())
        ]
        frame = pd.DataFrame(rows, columns=["day", "sku", "position", "lift"])
        frame.insert(0, "date", self._date(frame.pop("day").to_numpy(dtype=np.int64)))
        return frame

    def purchase_order_frame(self) -> pd.DataFrame:
        columns = [f.name for f in dataclasses.fields(PurchaseOrder)]
        rows = [dataclasses.astuple(p) for p in self.supply.purchase_orders]
        frame = pd.DataFrame(rows, columns=columns)
        frame.insert(0, "created_date", self._date(frame["created_day"].to_numpy(dtype=np.int64)))
        return frame
