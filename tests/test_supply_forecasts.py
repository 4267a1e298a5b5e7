"""The supply flow's days of cover use the demand flow's forecasts when both run."""

from __future__ import annotations

from datetime import date

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from processors.supply_impact import CoverTracker
from streams.dataflow import build_flow
from streams.flows.demand import DemandFlow
from streams.flows.supply import SupplyFlow
from streams.registry import ManifestResolver, SchemaCatalog
from streams.serde import AvroSerializer
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator
from tests.helpers import message


def test_demand_forecasts_reach_the_supply_cover_state(monkeypatch: pytest.MonkeyPatch):
    seen: list[float] = []
    original = CoverTracker.on_forecast

    def spy(self: CoverTracker, daily: float, t: int):
        seen.append(daily)
        return original(self, daily, t)

    monkeypatch.setattr(CoverTracker, "on_forecast", spy)
    settings = Settings()
    resolver = ManifestResolver(SchemaCatalog.load())
    encoders = {f: AvroSerializer(resolver, f) for f in settings.topics.input_topics()}
    topics = settings.topics.input_topics()
    sim = Simulator(
        SimulationConfig(
            seed=2, start_date=date(2024, 9, 1), days=12, skus=8, stores=2, customers=40
        )
    )
    msgs = [
        message(topics[ev.family], encoders[ev.family](ev.value), offset=i, broker_ms=ev.event_time)
        for i, ev in enumerate(sim.events())
    ]
    demand = DemandFlow()
    writes: list = []
    built = build_flow(
        settings,
        resolver,
        tail=False,
        source=TestingSource(msgs),
        dead_letter_sink=TestingSink([]),
        redis_sink=TestingSink(writes),
        extensions=[demand, SupplyFlow(forecasts=demand)],
    )
    run_main(built.flow)
    assert any(w.kind == "forecast" for w in writes)
    assert seen and all(x >= 0 for x in seen)
