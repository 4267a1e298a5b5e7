"""The supply flow's days of cover use the demand flow's forecasts when both run."""

from __future__ import annotations

from datetime import date

import pytest

from processors.supply_impact import CoverTracker
from streams.flows.demand import DemandFlow
from streams.flows.supply import SupplyFlow
from streams.simulator import SimulationConfig, Simulator
from tests.helpers import run_testing_flow, sim_messages


def test_demand_forecasts_reach_the_supply_cover_state(monkeypatch: pytest.MonkeyPatch):
    seen: list[float] = []
    original = CoverTracker.on_forecast

    def spy(self: CoverTracker, daily: float, t: int):
        seen.append(daily)
        return original(self, daily, t)

    monkeypatch.setattr(CoverTracker, "on_forecast", spy)
    sim = Simulator(
        SimulationConfig(
            seed=2, start_date=date(2024, 9, 1), days=12, skus=8, stores=2, customers=40
        )
    )
    demand = DemandFlow()
    _, _, writes = run_testing_flow(
        sim_messages(sim.events()), [demand, SupplyFlow(forecasts=demand)]
    )
    assert any(w.kind == "forecast" for w in writes)
    assert seen and all(x >= 0 for x in seen)
