"""Inventory, periodic replenishment and the supplier side of purchase orders.

Every SKU x store pair holds ``on_hand`` and ``on_order`` units. Each store reviews its
stock once per ``review_period_days`` (stores staggered over the week) with an (s, S)
policy on the inventory position ``on_hand + on_order``: below the reorder point
``s = r(L + R) + 1.65 sqrt(r(L + R))`` it orders up to ``S = s + r * cover_days``, where
``r`` is an exponentially smoothed sales rate, ``L`` the supplier's committed lead time and
``R`` the review period.

A purchase order (PO_CREATED, evening) is dispatched 1..L-1 days later
(SHIPMENT_DISPATCHED) and received on day ``created + lead`` (SHIPMENT_RECEIVED, morning),
with lead ~ Gamma(shape, mean) of the supplier, at least two days. With probability
``1 - fill_rate`` only part of the order ships. Late shipments usually get a DELAY_NOTICE
on their dispatch day; a few shipments have a QUALITY_INCIDENT on receipt (the damaged
units are written off). During a disruption episode of its supplier, POs created then
have lead times x2-3, much lower fill rates, twice the incidents and nearly always a notice.
With ``disruption_notices``, the supplier also warns at the episode's onset (its start day
plus 0-1 days): one DELAY_NOTICE per PO already in flight (created before the start, not
yet received). Those POs still arrive as first planned (the notice is a warning only), and
the notices draw from their own random stream and carry their own event ids (``sn<seed>-``),
so every other event is exactly what it would be without them.

Demand is unconstrained by default: a sale the shelf cannot cover is served from the
distribution centre (not modelled) and ``on_hand`` stops at zero; with
``lost_sales=True`` sales are capped by stock instead (censored demand).

>>> from streams.simulator.config import SimulationConfig
>>> from streams.simulator.supply import plan_disruptions
>>> from streams.simulator.world import build_world
>>> cfg = SimulationConfig(days=60)
>>> world = build_world(cfg, np.random.default_rng(0))
>>> eps = plan_disruptions(cfg, world, 0, np.random.default_rng(1))
>>> len(eps), all(0 <= e.start_day <= e.end_day < 60 for e in eps)
(3, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from streams.simulator.config import SimulationConfig
from streams.simulator.disruptions import Disruption, plan_disruptions
from streams.simulator.events import DAY_MS, HOUR_MS, Ids, SimEvent, inventory_event, supplier_event
from streams.simulator.world import World

__all__ = ["Disruption", "PurchaseOrder", "SupplyChain", "plan_disruptions"]

_DELAY_REASONS = ("production backlog", "carrier capacity", "customs hold", "late raw materials")
_INCIDENT_REASONS = ("damaged packaging", "wrong labels", "short expiry", "contamination")
_SEVERITIES = ("LOW", "MEDIUM", "HIGH")
_SMOOTHING = 1.0 / 28.0  # sales-rate smoothing: about four weeks of memory


class _Flight(NamedTuple):
    """A PO not yet received, as its supplier knows it (for onset notices)."""

    supplier_idx: int
    created_day: int
    receipt_day: int
    po_id: str
    shipment_id: str
    sku: str
    store_id: str
    planned_ms: int  # midnight of the planned receipt day
    received_ms: int  # the planned receipt time
    expected_ms: int  # the committed date


@dataclass(frozen=True)
class PurchaseOrder:
    po_id: str
    supplier_id: str
    sku: str
    store_id: str
    created_day: int
    committed_lead_days: int
    lead_days: int  # actual: received on created_day + lead_days
    dispatch_days: int
    ordered: int
    shipped: int
    damaged: int
    episode_id: str | None
    delay_notice: bool


class SupplyChain:
    """Stock per SKU x store and every purchase order in flight."""

    def __init__(self, config: SimulationConfig, world: World, ids: Ids) -> None:
        self._cfg, self._world, self._ids = config, world, ids
        n_store = len(world.stores)
        self.on_hand = np.zeros((0, n_store), dtype=np.int64)
        self.on_order = np.zeros((0, n_store), dtype=np.int64)
        self.rate = np.zeros((0, n_store))
        self.daily_mask = np.zeros((0, n_store), dtype=bool)
        self._arrivals: dict[
            int, list[tuple[int, int, int, int]]
        ] = {}  # day -> (s, k, net, ordered)
        self._restock: dict[int, list[tuple[int, int, int]]] = {}
        self.purchase_orders: list[PurchaseOrder] = []
        self.disruptions: list[Disruption] = []
        self._committed = np.array(
            [s.committed_lead_days for s in world.suppliers], dtype=np.float64
        )
        # Onset notices: their own random stream and event-id counter (see the module doc).
        self._notices = config.disruptions and config.disruption_notices
        self._notice_rng = np.random.default_rng([config.seed, 7001])
        self._notice_ids = Ids(config.seed)
        self._flights: list[_Flight] = []
        self._notice_days: dict[int, list[tuple[Disruption, int]]] = {}  # day -> (ep, ms)
        self.onset_notices: dict[str, tuple[int, int]] = {}  # episode -> (first ms, count)

    def _levels(self, rate: np.ndarray, sku: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(reorder point, order-up-to level) for rates of shape (len(sku), n_store)."""
        horizon = (self._committed[self._world.skus.supplier[sku]] + self._cfg.review_period_days)[
            :, None
        ]
        r = np.maximum(rate, 0.01)
        rop = r * horizon + 1.65 * np.sqrt(r * horizon)
        return rop, rop + r * self._cfg.cover_days

    def grow(self, rng: np.random.Generator, *, launch: bool) -> None:
        """Stock the shelves for SKUs added to the world since the last call."""
        first, n = len(self.on_hand), len(self._world.skus)
        if n == first:
            return
        sku = np.arange(first, n)
        rate = self._world.skus.base[first:n].copy()  # the planner's launch forecast
        rop, top = self._levels(rate, sku)
        # New SKUs start with a full shelf; older ones anywhere between s and S.
        fill = np.ones_like(rate) if launch else rng.random(rate.shape)
        stock = np.ceil(rop + fill * (top - rop)).astype(np.int64)
        self.on_hand = np.concatenate([self.on_hand, stock])
        self.on_order = np.concatenate([self.on_order, np.zeros_like(stock)])
        self.rate = np.concatenate([self.rate, rate])
        self.daily_mask = np.concatenate(
            [self.daily_mask, rng.random(rate.shape) < self._cfg.inventory_daily_share]
        )

    def add_disruptions(self, episodes: list[Disruption]) -> None:
        self.disruptions.extend(episodes)
        if self._notices:  # onset: start day + 0-1 days, from 08:00-15:00
            for ep in episodes:
                lag = int(self._notice_rng.integers(0, 2))
                offset = int(self._notice_rng.integers(8 * HOUR_MS, 15 * HOUR_MS))
                self._notice_days.setdefault(ep.start_day + lag, []).append((ep, offset))

    def episode(self, supplier: int, day: int) -> Disruption | None:
        for ep in self.disruptions:
            if ep.supplier_idx == supplier and ep.start_day <= day <= ep.end_day:
                return ep
        return None

    def morning(self, day: int) -> None:
        """Receive today's shipments (before the first sale)."""
        for s, k, net, ordered in self._arrivals.pop(day, []):
            self.on_hand[s, k] += net
            self.on_order[s, k] -= ordered

    def fulfil(
        self, demand_store: np.ndarray, demand_online: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Units sold per channel; takes them off the shelf."""
        if self._cfg.lost_sales:
            sold_online = np.minimum(demand_online, self.on_hand)
            sold_store = np.minimum(demand_store, self.on_hand - sold_online)
        else:
            sold_online, sold_store = demand_online, demand_store
        self.on_hand = np.maximum(self.on_hand - sold_store - sold_online, 0)
        return sold_store, sold_online

    def add_restock(self, day: int, sku: int, store: int, units: int) -> None:
        self._restock.setdefault(day, []).append((sku, store, units))

    def end_of_day(
        self, day: int, start_ms: int, sold: np.ndarray, rng: np.random.Generator
    ) -> tuple[list[SimEvent], list[tuple[int, SimEvent]]]:
        """Restocks, the stock review and its purchase orders, snapshots.

        Returns today's events and (day, event) pairs for later days.
        """
        for s, k, units in self._restock.pop(day, []):
            self.on_hand[s, k] += units
        self.rate += _SMOOTHING * (sold - self.rate)
        today: list[SimEvent] = []
        later: list[tuple[int, SimEvent]] = []
        if self._notices:
            self._flights = [f for f in self._flights if f.receipt_day > day]
            for ep, offset in self._notice_days.pop(day, []):
                today.extend(self._onset_notices(ep, start_ms + offset))
        n_store = len(self._world.stores)
        reviewing = (day + np.arange(n_store)) % self._cfg.review_period_days == 0
        if reviewing.any():
            sku = np.arange(len(self.on_hand))
            rop, top = self._levels(self.rate, sku)
            position = self.on_hand + self.on_order
            need = (position <= rop) & reviewing[None, :]
            for s, k in zip(*np.nonzero(need), strict=True):
                qty = max(1, math.ceil(top[s, k] - position[s, k]))
                self._purchase(int(s), int(k), qty, day, start_ms, rng, today, later)
        today.extend(self._snapshots(day, start_ms))
        return today, later

    def _purchase(
        self,
        s: int,
        k: int,
        qty: int,
        day: int,
        start_ms: int,
        rng: np.random.Generator,
        today: list[SimEvent],
        later: list[tuple[int, SimEvent]],
    ) -> None:
        world, ids = self._world, self._ids
        j = int(world.skus.supplier[s])
        sup = world.suppliers[j]
        ep = self.episode(j, day)
        lead = rng.gamma(sup.lead_shape, sup.mean_lead_days / sup.lead_shape)
        lead = max(2, round(lead * (ep.lead_multiplier if ep else 1.0)))
        fill = sup.fill_rate * (ep.fill_factor if ep else 1.0)
        shipped = (
            qty
            if qty == 1 or rng.random() < fill
            else max(1, math.floor(qty * rng.uniform(0.3, 0.9)))
        )
        dispatch = int(rng.integers(1, lead))
        committed = sup.committed_lead_days
        sku_id, store_id = world.skus.ids[s], world.stores[k].store_id
        po_id, shipment = ids.make("PO", 8), ids.make("SH", 8)

        def event(event_type: str, t: int, **fields: Any) -> SimEvent:
            return supplier_event(
                ids,
                event_type,
                t,
                supplier_id=sup.supplier_id,
                po_id=po_id,
                sku=sku_id,
                store_id=store_id,
                **fields,
            )

        expected = start_ms + committed * DAY_MS
        t_created = start_ms + 19 * HOUR_MS + int(rng.integers(0, 2 * HOUR_MS))
        today.append(event("PO_CREATED", t_created, quantity_ordered=qty, expected_date=expected))
        t_dispatch = start_ms + dispatch * DAY_MS + 8 * HOUR_MS + int(rng.integers(0, 8 * HOUR_MS))
        later.append(
            (
                day + dispatch,
                event(
                    "SHIPMENT_DISPATCHED",
                    t_dispatch,
                    quantity=shipped,
                    shipment_id=shipment,
                    expected_date=expected,
                    actual_date=t_dispatch,
                ),
            )
        )
        delay = lead - committed
        notice = delay >= 1 and rng.random() < (0.95 if ep else 0.6)
        if notice:
            announced = round(max(0.5, delay * rng.uniform(0.7, 1.2)), 1)
            t_notice = (
                start_ms + dispatch * DAY_MS + 16 * HOUR_MS + int(rng.integers(0, 2 * HOUR_MS))
            )
            later.append(
                (
                    day + dispatch,
                    event(
                        "DELAY_NOTICE",
                        t_notice,
                        shipment_id=shipment,
                        expected_date=expected + round(announced * DAY_MS),
                        delay_days=announced,
                        severity=_SEVERITIES[0 if announced < 3 else 1 if announced < 7 else 2],
                        reason=ep.reason if ep else str(rng.choice(_DELAY_REASONS)),
                    ),
                )
            )
        t_received = start_ms + lead * DAY_MS + 6 * HOUR_MS + int(rng.integers(0, 4 * HOUR_MS))
        later.append(
            (
                day + lead,
                event(
                    "SHIPMENT_RECEIVED",
                    t_received,
                    quantity=shipped,
                    shipment_id=shipment,
                    expected_date=expected,
                    actual_date=t_received,
                ),
            )
        )
        damaged = 0
        if rng.random() < sup.incident_rate * (2.0 if ep else 1.0):
            damaged = min(shipped, max(1, int(rng.binomial(shipped, rng.uniform(0.05, 0.3)))))
            t_incident = t_received + int(rng.integers(HOUR_MS, 6 * HOUR_MS))
            later.append(
                (
                    day + lead,
                    event(
                        "QUALITY_INCIDENT",
                        t_incident,
                        quantity=damaged,
                        shipment_id=shipment,
                        severity=str(rng.choice(_SEVERITIES, p=[0.5, 0.35, 0.15])),
                        reason=str(rng.choice(_INCIDENT_REASONS)),
                    ),
                )
            )
        self.on_order[s, k] += qty
        self._arrivals.setdefault(day + lead, []).append((s, k, shipped - damaged, qty))
        if self._notices:
            planned = start_ms + lead * DAY_MS
            flight = _Flight(j, day, day + lead, po_id, shipment, sku_id, store_id, planned,
                             t_received, expected)  # fmt: skip
            self._flights.append(flight)
        self.purchase_orders.append(
            PurchaseOrder(
                po_id,
                sup.supplier_id,
                sku_id,
                store_id,
                day,
                committed,
                lead,
                dispatch,
                qty,
                shipped,
                damaged,
                ep.episode_id if ep else None,
                notice,
            )
        )

    def _onset_notices(self, ep: Disruption, t0: int) -> list[SimEvent]:
        """The supplier's warnings for its POs in flight when ``ep`` hits, sent within two
        hours of ``t0``: delay = remaining lead x (lead multiplier - 1), at least a day."""
        out: list[SimEvent] = []
        rng, seed = self._notice_rng, self._cfg.seed
        for f in self._flights:
            if f.supplier_idx != ep.supplier_idx or f.created_day >= ep.start_day:
                continue
            t = t0 + int(rng.integers(0, 2 * HOUR_MS))
            remaining = (f.received_ms - t) / DAY_MS
            delay = max(1.0, round(remaining * (ep.lead_multiplier - 1.0), 1))
            event = supplier_event(
                self._notice_ids,
                "DELAY_NOTICE",
                t,
                supplier_id=ep.supplier_id,
                po_id=f.po_id,
                sku=f.sku,
                store_id=f.store_id,
                shipment_id=f.shipment_id,
                expected_date=max(f.expected_ms, f.planned_ms) + round(delay * DAY_MS),
                delay_days=delay,
                severity=_SEVERITIES[0 if delay < 3 else 1 if delay < 7 else 2],
                reason=ep.reason,
            )
            event.value["event_id"] = self._notice_ids.make(f"sn{seed}-", 9)
            out.append(event)
        if out:
            self.onset_notices[ep.episode_id] = (min(e.event_time for e in out), len(out))
        return out

    def _snapshots(self, day: int, start_ms: int) -> list[SimEvent]:
        """End-of-day stock: every pair on full-count days, the daily sample otherwise."""
        every = self._cfg.inventory_full_count_every_days
        full_count = bool(every) and day % every == 0
        cells = np.ones_like(self.daily_mask) if full_count else self.daily_mask
        t = start_ms + DAY_MS - 60_000
        ids, skus, stores = self._ids, self._world.skus.ids, self._world.stores
        out = []
        for k in range(len(stores)):
            rows = np.flatnonzero(cells[:, k])
            on_hand, on_order = self.on_hand[rows, k].tolist(), self.on_order[rows, k].tolist()
            for s, oh, oo in zip(rows.tolist(), on_hand, on_order, strict=True):
                out.append(inventory_event(ids, t, skus[s], stores[k].store_id, oh, oo))
        return out
