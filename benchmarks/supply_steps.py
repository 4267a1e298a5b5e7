"""The supply flow's routing and cover steps in-process, for the benchmarks that drive the
supply engine directly (bench_supply, bench_memory)."""

from __future__ import annotations

from typing import Any

from processors.records import DeadLetter, Event
from processors.shards import Shards
from processors.supply_impact import Cover
from streams.flows.supply import _CoverLogic, _route, engine_key

__all__ = ["CoverSteps"]


class _NoFailures:
    """_route's dead-letter hook: simulated events are all valid, so any failure is a bug."""

    def dead_letter(self, e: Event, exc: Exception) -> DeadLetter:
        raise exc


class CoverSteps:
    """``supply_route`` then ``supply_cover`` (keyed by hand, as Bytewax keys them)."""

    def __init__(self, alpha: float, idle_days: float, shards: int = 12) -> None:
        self.shards = Shards(shards)
        self.key = engine_key(self.shards)
        self.alpha, self.idle_days = alpha, idle_days
        self.logics: dict[str, _CoverLogic] = {}

    def __call__(self, events: list[Event]) -> tuple[list[Event], list[tuple[str, str, Cover]]]:
        """(supplier events for the engine, ``(store, sku, cover)`` s in order)."""
        supplier: list[Event] = []
        covers: list[tuple[str, str, Cover]] = []
        fail: Any = _NoFailures()
        for key, item in _route(events, self.key, self.shards, fail, None):
            if key == self.key:  # one packet of the batch's supplier events
                supplier.extend(item)
                continue
            logic = self.logics.get(key)
            if logic is None:
                logic = self.logics[key] = _CoverLogic(self.alpha, None, self.idle_days)
            for _, store, got in logic.on_batch([item])[0]:
                covers.extend((store, sku, cover) for sku, cover in got)
        return supplier, covers

    def state_bytes(self) -> int:
        return sum(len(lg.snapshot()) for lg in self.logics.values())

    def trackers(self) -> int:
        return sum(len(c.trackers) for lg in self.logics.values() for c in lg.stores.values())
