"""Web and app sessions: the clickstream around online orders, and sessions that abandon.

A buying session: landing page, (the recommendation slate), for each line either a click on
the slate or a search, then product view and add-to-cart, sometimes a change of mind
(add then remove), a login just before checkout for customers who browsed anonymously,
checkout; the order event follows seconds later. Browsing sessions look alike but stop
early: most never add to cart, some remove again, a few abandon at checkout.

The anonymous id is the customer's cookie or device id (or a fresh id for guests and
unknown visitors); ``customer_id`` is null until the LOGIN event and set after it, so
anonymous history can be joined to the customer who later logs in.

>>> from streams.simulator.config import SimulationConfig
>>> from streams.simulator.events import Ids
>>> from streams.simulator.world import build_world
>>> w = build_world(SimulationConfig(skus=5, stores=1), np.random.default_rng(0))
>>> writer = SessionWriter(w, Ids(7), 0.3)
>>> writer.set_day(0, np.zeros(0, dtype=np.int64), np.ones(5))
>>> rng = np.random.default_rng(3)
>>> events, t, imps = writer.purchase(rng, "WEB", "AW0000001", "CU0000001", True, [(2, 1, False)])
>>> [e.value["event_type"] for e in events][-2:], events[-1].value["customer_id"]
(['LOGIN', 'CHECKOUT'], 'CU0000001')
"""

from __future__ import annotations

import numpy as np

from streams.simulator.demand import Line
from streams.simulator.events import DAY_MS, Ids, SimEvent, click_event, sample_time
from streams.simulator.recommender import RECOMMENDER_ID
from streams.simulator.world import World

__all__ = ["SessionWriter"]

_MAX_STEPS = 48  # gaps drawn per session; more steps reuse the last gap


class _Session:
    """Event clock and identity of one session (customer id appears after LOGIN)."""

    def __init__(
        self, ids: Ids, rng: np.random.Generator, start: int, end: int, channel: str, anon: str
    ) -> None:
        self.ids, self.channel, self.anon = ids, channel, anon
        self.session_id = ids.make("SE")
        self.customer: str | None = None
        self.events: list[SimEvent] = []
        self._gaps = (rng.exponential(30_000.0, _MAX_STEPS) + 2_000.0).astype(np.int64).tolist()
        self._t, self._end, self._step = start, end - 1, 0

    def tick(self) -> int:
        t = self._t
        self._t = min(self._t + self._gaps[min(self._step, _MAX_STEPS - 1)], self._end)
        self._step += 1
        return t

    def emit(self, event_type: str, **fields: object) -> None:
        self.events.append(
            click_event(
                self.ids,
                event_type,
                self.tick(),
                self.session_id,
                self.anon,
                self.customer,
                self.channel,
                **fields,  # type: ignore[arg-type]
            )
        )


class SessionWriter:
    """Builds sessions for one day at a time (``set_day`` first)."""

    def __init__(self, world: World, ids: Ids, impression_share: float) -> None:
        self._world, self._ids, self._impression_share = world, ids, impression_share
        self._day_ms = 0
        self._slate: list[int] = []
        self._slot: dict[int, int] = {}
        self._view_cum = np.ones(1)

    def set_day(self, day_start_ms: int, slate: np.ndarray, view_weight: np.ndarray) -> None:
        """Today's start, recommendation slate and product-view weights (online demand)."""
        self._day_ms = day_start_ms
        self._slate = slate.tolist()
        self._slot = {s: p for p, s in enumerate(self._slate)}
        cum = np.cumsum(view_weight)
        self._view_cum = cum if len(cum) and cum[-1] > 0 else np.arange(1.0, len(view_weight) + 1)

    def _pick(self, rng: np.random.Generator, n: int) -> list[int]:
        """``n`` SKUs to look at, in proportion to today's online demand."""
        cum = self._view_cum
        picks = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
        return np.minimum(picks, len(cum) - 1).tolist()

    def _open(self, rng: np.random.Generator, channel: str, anon: str) -> _Session:
        start = sample_time(rng, self._day_ms, "online")
        end = self._day_ms + DAY_MS
        # Start early enough that a long session still ends on the same day.
        return _Session(self._ids, rng, min(start, end - 3_000_000), end, channel, anon)

    def _impressions(self, s: _Session) -> str:
        impression = self._ids.make("IM")
        for pos, sku in enumerate(self._slate):
            s.emit(
                "RECOMMENDATION_IMPRESSION",
                sku=self._world.skus.ids[sku],
                recommender_id=RECOMMENDER_ID,
                impression_id=impression,
                position=pos,
            )
        return impression

    def _search(self, s: _Session, sku: int) -> None:
        category = self._world.categories[int(self._world.skus.category[sku])]
        s.emit("SEARCH", search_query=category.name.lower(), page="/search")

    def purchase(
        self,
        rng: np.random.Generator,
        channel: str,
        anon: str,
        customer: str | None,
        login: bool,
        lines: list[Line],
    ) -> tuple[list[SimEvent], int, dict[int, str]]:
        """Session ending in checkout: (events, order time, impression id per slate SKU bought).

        ``login``: the customer browses anonymously and logs in before checkout; otherwise
        a known customer is logged in throughout.
        """
        ids = self._world.skus.ids
        s = self._open(rng, channel, anon)
        s.customer = None if login else customer
        s.emit("PAGE_VIEW", page="/")
        impression = None
        wants_slate = any(rec for _, _, rec in lines) or rng.random() < self._impression_share
        if self._slate and wants_slate:
            impression = self._impressions(s)
        bought: dict[int, str] = {}
        for sku, qty, rec in lines:
            if rec and impression is not None and sku in self._slot:
                s.emit(
                    "RECOMMENDATION_CLICK",
                    sku=ids[sku],
                    recommender_id=RECOMMENDER_ID,
                    impression_id=impression,
                    position=self._slot[sku],
                )
                bought[sku] = impression
            elif rng.random() < 0.4:
                self._search(s, sku)
            s.emit("PRODUCT_VIEW", sku=ids[sku], page=f"/p/{ids[sku]}")
            s.emit("ADD_TO_CART", sku=ids[sku], quantity=qty)
        if rng.random() < 0.1:  # a change of mind
            other = ids[self._pick(rng, 1)[0]]
            s.emit("PRODUCT_VIEW", sku=other, page=f"/p/{other}")
            s.emit("ADD_TO_CART", sku=other, quantity=1)
            s.emit("REMOVE_FROM_CART", sku=other, quantity=1)
        if login and customer is not None:
            s.customer = customer
            s.emit("LOGIN", page="/login")
        s.emit("CHECKOUT", page="/checkout")
        return s.events, s.tick(), bought

    def browse(
        self,
        rng: np.random.Generator,
        channel: str,
        anon: str,
        customer: str | None,
        login: bool,
    ) -> list[SimEvent]:
        """A session without an order (a known customer logs in only if ``login``)."""
        ids = self._world.skus.ids
        s = self._open(rng, channel, anon)
        s.emit("PAGE_VIEW", page="/")
        if login and customer is not None:
            s.customer = customer
            s.emit("LOGIN", page="/login")
        if self._slate and rng.random() < self._impression_share:
            impression = self._impressions(s)
            if rng.random() < 0.15:
                pos = int(rng.integers(len(self._slate)))
                s.emit(
                    "RECOMMENDATION_CLICK",
                    sku=ids[self._slate[pos]],
                    recommender_id=RECOMMENDER_ID,
                    impression_id=impression,
                    position=pos,
                )
                s.emit(
                    "PRODUCT_VIEW", sku=ids[self._slate[pos]], page=f"/p/{ids[self._slate[pos]]}"
                )
        views = self._pick(rng, 1 + min(int(rng.poisson(0.8)), 4))
        for sku in views:
            if rng.random() < 0.35:
                self._search(s, sku)
            s.emit("PRODUCT_VIEW", sku=ids[sku], page=f"/p/{ids[sku]}")
        if rng.random() < 0.25:
            first = ids[int(views[0])]
            qty = 1 + int(rng.random() < 0.3)
            s.emit("ADD_TO_CART", sku=first, quantity=qty)
            if rng.random() < 0.35:
                s.emit("REMOVE_FROM_CART", sku=first, quantity=qty)
            elif rng.random() < 0.15:
                s.emit("CHECKOUT", page="/checkout")  # abandoned at payment
        return s.events
