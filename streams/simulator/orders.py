"""Order events: baskets of lines priced for the day, plus their cancellations and returns.

Lines carry the regular shelf price as ``unit_price`` and the promotion's per-unit
``discount`` (0 <= discount <= unit_price) with its ``promotion_id``; a line bought from the
recommendation slate carries the slate's ``impression_id``. A small share of orders is
cancelled later the same day (online orders more often), and a share is returned
``3..max_return_days`` days later, repeating some of the lines with the returned units.
Cancelled and returned units go back on the fulfilling store's shelf.

>>> from streams.simulator.config import SimulationConfig
>>> from streams.simulator.events import Ids
>>> from streams.simulator.world import build_world
>>> w = build_world(SimulationConfig(skus=3, stores=1), np.random.default_rng(0))
>>> writer = OrderWriter(w, Ids(7))
>>> writer.set_day(0, 0, [10.99, 5.99, 2.99], [1.1, 0.0, 0.0], ["PR000001", None, None])
>>> lines = writer.lines([(0, 2, False), (0, 1, False)], {})
>>> lines[0]["quantity"], lines[0]["discount"], lines[0]["promotion_id"]
(3, 1.1, 'PR000001')
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streams.simulator.demand import Line
from streams.simulator.events import DAY_MS, Ids, SimEvent, order_event, sample_time
from streams.simulator.world import World

__all__ = ["OrderWriter"]


class OrderWriter:
    """Turns baskets into order events; keeps the returns and restocks it scheduled."""

    def __init__(self, world: World, ids: Ids) -> None:
        self._world, self._ids = world, ids
        self._cfg = world.config
        self._day, self._day_ms = 0, 0
        self._prices: list[float] = []
        self._discounts: list[float] = []
        self._promos: list[str | None] = []
        self.later: list[tuple[int, SimEvent]] = []  # (day, event) for future days
        self.restock: list[tuple[int, int, int, int]] = []  # (day, sku, store, units)

    def set_day(
        self,
        day: int,
        day_start_ms: int,
        prices: list[float],
        discounts: list[float],
        promotion_ids: list[str | None],
    ) -> None:
        self._day, self._day_ms = day, day_start_ms
        self._prices, self._discounts, self._promos = prices, discounts, promotion_ids

    def lines(self, basket: list[Line], impressions: dict[int, str]) -> list[dict[str, Any]]:
        """Order lines of a basket; the same SKU twice becomes one line."""
        merged: dict[int, int] = {}
        for sku, qty, _ in basket:
            merged[sku] = merged.get(sku, 0) + qty
        ids = self._world.skus.ids
        return [
            {
                "sku": ids[sku],
                "quantity": qty,
                "unit_price": self._prices[sku],
                "discount": self._discounts[sku],
                "promotion_id": self._promos[sku],
                "impression_id": impressions.get(sku),
            }
            for sku, qty in merged.items()
        ]

    def place(
        self,
        rng: np.random.Generator,
        t: int,
        customer_id: str | None,
        store: int,
        channel: str,
        lines: list[dict[str, Any]],
    ) -> list[SimEvent]:
        """ORDER_PLACED (and a same-day ORDER_CANCELLED); a later return is kept in ``later``."""
        cfg = self._cfg
        store_id = self._world.stores[store].store_id
        order_id = self._ids.make("O")
        placed = order_event(
            self._ids,
            "ORDER_PLACED",
            t,
            order_id,
            customer_id,
            store_id,
            channel,
            cfg.currency,
            lines,
        )
        out = [placed]
        cancel_share = cfg.cancel_share_store if channel == "STORE" else cfg.cancel_share_online
        if rng.random() < cancel_share:
            end = self._day_ms + DAY_MS - 1
            t_cancel = min(t + int(rng.integers(300_000, 3 * 3_600_000)), end)
            out.append(
                order_event(
                    self._ids,
                    "ORDER_CANCELLED",
                    t_cancel,
                    order_id,
                    customer_id,
                    store_id,
                    channel,
                    cfg.currency,
                    [dict(line) for line in lines],
                )
            )
            self._restock(self._day, store, lines)
        elif rng.random() < cfg.return_share:
            day = self._day + int(rng.integers(3, max(cfg.max_return_days, 3) + 1))
            keep = rng.random(len(lines)) < 0.6
            keep[int(rng.integers(len(lines)))] = True
            returned = [
                {**line, "quantity": int(rng.integers(1, line["quantity"] + 1))}
                for line, k in zip(lines, keep.tolist(), strict=True)
                if k
            ]
            t_return = sample_time(rng, self._day_ms + (day - self._day) * DAY_MS, "store")
            self.later.append(
                (
                    day,
                    order_event(
                        self._ids,
                        "ORDER_RETURNED",
                        t_return,
                        order_id,
                        customer_id,
                        store_id,
                        channel,
                        cfg.currency,
                        returned,
                    ),
                )
            )
            self._restock(day, store, returned)
        return out

    def _restock(self, day: int, store: int, lines: list[dict[str, Any]]) -> None:
        index = self._world.skus.index
        for line in lines:
            self.restock.append((day, index[line["sku"]], store, line["quantity"]))
