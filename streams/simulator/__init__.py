"""A seeded, simulated retailer: every event family, one simulated day at a time.

The simulator emits Python dicts that match the Avro schemas in ``schemas/avro`` exactly
(times are UTC epoch milliseconds, enums are symbol strings, optional fields are present
with ``None``) together with the ground truth behind them (expected demand, customer churn
dates, disruption episodes, recommendation lift, ...). ``replay_events`` turns your own
history (CSV or Parquet) into the same events. See ``docs/simulator.md``.

>>> sim = Simulator(SimulationConfig(days=14, skus=10, stores=2, customers=50))
>>> events = list(sim.events())
>>> sorted({e.family for e in events})
['catalog', 'clickstream', 'inventory', 'orders', 'stores', 'supplier']
>>> all(a.event_time <= b.event_time for a, b in zip(events, events[1:]))
True
"""

from __future__ import annotations

from streams.simulator.config import SimulationConfig
from streams.simulator.events import FAMILIES, SimEvent
from streams.simulator.generator import Simulator
from streams.simulator.replay import replay_events
from streams.simulator.truth import GroundTruth
from streams.simulator.truth_files import write_ground_truth

__all__ = [
    "FAMILIES",
    "GroundTruth",
    "SimEvent",
    "SimulationConfig",
    "Simulator",
    "replay_events",
    "write_ground_truth",
]
