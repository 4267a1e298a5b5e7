"""Supplier disruption episodes: which supplier, when, and how badly.

Episodes are planned per block of ``config.days`` days, one per equal segment of the block,
on suppliers taken in a seeded random order; during one, the supplier's new POs take
``lead_multiplier`` times longer and ship ``fill_factor`` of their usual fill rate
(streams/simulator/supply.py applies them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.simulator.config import SimulationConfig
from streams.simulator.world import World

__all__ = ["Disruption", "plan_disruptions", "scheduled_disruptions"]

_DISRUPTION_REASONS = (
    "port congestion",
    "factory shutdown",
    "carrier strike",
    "raw material shortage",
    "severe weather",
)


@dataclass(frozen=True)
class Disruption:
    episode_id: str
    supplier_idx: int
    supplier_id: str
    start_day: int
    end_day: int  # inclusive
    lead_multiplier: float
    fill_factor: float
    reason: str


def plan_disruptions(
    config: SimulationConfig, world: World, block: int, rng: np.random.Generator
) -> list[Disruption]:
    """Episodes of the ``block``-th run of ``config.days`` days: one per equal segment."""
    n, length_of_block = config.disruption_episodes, config.days
    if n == 0 or not config.disruptions:
        return []
    segment = length_of_block / n
    suppliers = rng.permutation(len(world.suppliers))
    out = []
    for i in range(n):
        lo, hi = config.disruption_days
        longest = max(1, int(segment) - 1)
        length = min(int(rng.integers(lo, hi + 1)), longest)
        first = block * length_of_block + int(i * segment)
        latest = block * length_of_block + int((i + 1) * segment) - length
        start = int(rng.integers(first, max(first, latest) + 1))
        j = int(suppliers[i % len(suppliers)])
        out.append(_episode(f"DX{block * n + i + 1:03d}", config, world, j, start, length, rng))
    return out


def scheduled_disruptions(
    config: SimulationConfig, world: World, block: int, rng: np.random.Generator
) -> list[Disruption]:
    """The ``scheduled_disruptions`` days that fall in the ``block``-th run of ``config.days``.

    Drawn from their own random stream (the caller's ``rng``), so scheduling one never
    changes the planned episodes or any other event.
    """
    if not config.disruptions:
        return []
    first, end = block * config.days, (block + 1) * config.days
    out = []
    for k, start in enumerate(sorted(config.scheduled_disruptions)):
        if not first <= start < end:
            continue
        lo, hi = config.disruption_days
        length = int(rng.integers(lo, hi + 1))
        j = int(rng.integers(len(world.suppliers)))
        out.append(_episode(f"DS{k + 1:03d}", config, world, j, start, length, rng))
    return out


def _episode(
    episode_id: str,
    config: SimulationConfig,
    world: World,
    j: int,
    start: int,
    length: int,
    rng: np.random.Generator,
) -> Disruption:
    """Supplier ``j``'s episode; its severity and reason drawn from ``rng`` (in this order)."""
    return Disruption(
        episode_id=episode_id,
        supplier_idx=j,
        supplier_id=world.suppliers[j].supplier_id,
        start_day=start,
        end_day=start + length - 1,
        lead_multiplier=float(rng.uniform(*config.disruption_lead_multiplier)),
        fill_factor=float(rng.uniform(*config.disruption_fill_factor)),
        reason=str(rng.choice(_DISRUPTION_REASONS)),
    )
