"""What the simulated retailer looks like: sizes, feature switches and volume knobs.

Every field has a default; the defaults make a one-year run produce roughly half a million
events, so a backfill into Kafka takes well under a minute to generate. Each switch turns
one mechanism off; every mechanism has its own random stream (see
:mod:`streams.simulator.generator`), so the others' random numbers stay the same.

>>> cfg = SimulationConfig(days=30, skus=50)
>>> cfg.end_date.isoformat(), cfg.slate_size
('2024-12-01', 4)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta

__all__ = ["SimulationConfig"]


@dataclass(frozen=True)
class SimulationConfig:
    """Sizes, switches and rates of the simulated retailer (all days are UTC days)."""

    seed: int = 7
    start_date: date = date(2024, 11, 1)  # first simulated day
    days: int = 365
    # -- the world ----------------------------------------------------------------------
    regions: int = 3
    stores: int = 12  # spread over the regions, with log-normal sizes
    departments: int = 4
    categories_per_department: int = 4
    skus: int = 200  # SKUs on sale on the first day
    new_skus_per_week: int = 3  # cold-start launches
    customers: int = 5000  # customers known on the first day
    new_customers_per_day: float = 8.0  # Poisson mean of sign-ups per day
    suppliers: int = 10
    country: str = "US"  # public holidays from the `holidays` package
    currency: str = "USD"
    timezone: str = "UTC"  # every store's time zone (days are cut in UTC regardless)
    # -- switches (documented in docs/simulator.md) ---------------------------------------
    weekly_seasonality: bool = True  # weekend peaks in stores, Sunday evening online
    yearly_seasonality: bool = True  # smooth Fourier curve per department, December peak
    holidays: bool = True  # public holidays + Black Friday, Cyber Monday, Christmas
    promotions: bool = True  # temporary discounts with a price-elasticity lift
    price_changes: bool = True  # permanent shelf-price changes (PRICE_CHANGED)
    new_skus: bool = True  # weekly launches with a ramp-up (cold start)
    customer_churn: bool = True  # BG/NBD-style silent dropout after a purchase
    clickstream: bool = True  # web/app sessions (orders are still placed when off)
    recommendations: bool = True  # "popular last week" slate that lifts online demand
    disruptions: bool = True  # supplier episodes: long lead times, short fills, notices
    lost_sales: bool = False  # True: sales capped by on-hand stock (censored demand)
    disruption_episodes: int = 3  # per `days`-long block, spread out
    disruption_days: tuple[int, int] = (7, 21)  # episode length range (inclusive)
    disruption_lead_multiplier: tuple[float, float] = (2.0, 3.0)
    disruption_fill_factor: tuple[float, float] = (0.4, 0.7)  # fill rate multiplied by this
    # At an episode's onset (its start day + 0-1 days) the supplier sends a DELAY_NOTICE for
    # each PO already in flight (a warning: those POs still arrive as first planned). Drawn
    # from its own random stream with its own event ids: False gives the exact old stream.
    disruption_notices: bool = True
    # Extra episodes that start on these day indices (0 = start_date), on top of the planned
    # ones: the demo schedules one inside its live window so an alert is sure to show.
    scheduled_disruptions: tuple[int, ...] = ()
    # -- demand -------------------------------------------------------------------------
    mean_units_per_sku_store_day: float = 0.35  # average base rate over SKU x store
    popularity_sigma: float = 1.2  # log-normal spread of SKU popularity: slow movers
    store_affinity_sigma: float = 0.3  # SKU x store taste differences
    online_share: float = 0.10  # share of base demand sold through WEB/APP
    elasticity_range: tuple[float, float] = (-2.5, -1.5)  # price elasticity per SKU
    promotions_per_week: float = 6.0  # new promotions per week (x4 in Black Friday week)
    mean_days_between_price_changes: float = 120.0  # per SKU
    launch_ramp_days: tuple[float, float] = (4.0, 15.0)  # ramp-up time constant range
    # -- customers and sessions -----------------------------------------------------------
    mean_days_between_purchases: float = 30.0  # mean of the gamma-distributed rates
    purchase_rate_shape: float = 0.8  # gamma shape r (heterogeneity; < 1 = very uneven)
    dropout_beta: tuple[float, float] = (1.0, 12.0)  # Beta(a, b) dropout prob per purchase
    browse_sessions_per_purchase: float = 0.2  # non-buying sessions of known customers
    anonymous_session_rate: float = 0.004  # unknown visitors' sessions/day per initial customer
    # -- orders -------------------------------------------------------------------------
    cancel_share_online: float = 0.03
    cancel_share_store: float = 0.005
    return_share: float = 0.04
    max_return_days: int = 30
    # -- recommendations ----------------------------------------------------------------
    recommendation_lift: tuple[float, ...] = (0.8, 0.5, 0.35, 0.25)  # online lift per slot
    recommendation_window_days: int = 7  # the recommender ranks by sales over this window
    impression_share: float = 0.3  # share of browsing sessions that see the slate
    # -- supply and inventory -------------------------------------------------------------
    review_period_days: int = 7  # each store reviews its stock once per period
    cover_days: int = 56  # order-up-to level covers this many days beyond the lead time
    inventory_daily_share: float = 0.02  # SKU x store pairs with a daily snapshot
    inventory_full_count_every_days: int = 28  # all pairs counted every N days (0 = never)

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid SimulationConfig: " + "; ".join(problems))

    def _problems(self) -> Iterator[str]:
        positive = (
            "days",
            "regions",
            "stores",
            "departments",
            "categories_per_department",
            "skus",
            "suppliers",
            "review_period_days",
            "cover_days",
            "recommendation_window_days",
            "max_return_days",
        )
        for name in positive:
            if getattr(self, name) < 1:
                yield f"{name} must be >= 1"
        non_negative = (
            "seed",
            "new_skus_per_week",
            "customers",
            "new_customers_per_day",
            "disruption_episodes",
            "promotions_per_week",
            "browse_sessions_per_purchase",
            "anonymous_session_rate",
            "inventory_full_count_every_days",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                yield f"{name} must be >= 0"
        shares = (
            "online_share",
            "cancel_share_online",
            "cancel_share_store",
            "return_share",
            "impression_share",
            "inventory_daily_share",
        )
        if any(day < 0 for day in self.scheduled_disruptions):
            yield "scheduled_disruptions must be day indices >= 0"
        for name in shares:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                yield f"{name} must be in [0, 1]"
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                yield f"{f.name} must be finite"
        for name in ("disruption_days", "launch_ramp_days", "disruption_lead_multiplier"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                yield f"{name} must be (low, high) with 0 < low <= high"
        low, high = self.elasticity_range
        if not low <= high < 0:
            yield "elasticity_range must be negative (low, high) with low <= high"
        low, high = self.disruption_fill_factor
        if not 0 < low <= high <= 1:
            yield "disruption_fill_factor must be in (0, 1]"
        if not all(x > 0 for x in self.dropout_beta):
            yield "dropout_beta parameters must be > 0"
        if self.mean_units_per_sku_store_day <= 0 or self.mean_days_between_purchases <= 0:
            yield "rates must be > 0"
        if self.purchase_rate_shape <= 0 or self.mean_days_between_price_changes <= 0:
            yield "purchase_rate_shape and mean_days_between_price_changes must be > 0"
        if not self.recommendation_lift or any(x < 0 for x in self.recommendation_lift):
            yield "recommendation_lift needs at least one slot, all lifts >= 0"
        if not isinstance(self.start_date, date) or isinstance(self.start_date, datetime):
            yield "start_date must be a datetime.date (a UTC day)"
        if not self.currency or not self.timezone:
            yield "currency and timezone must not be empty"

    @property
    def end_date(self) -> date:
        """First day after the simulated period."""
        return self.start_date + timedelta(days=self.days)

    @property
    def slate_size(self) -> int:
        """Slots in the recommendation slate (one lift per slot)."""
        return len(self.recommendation_lift)
