"""The demand forecasting flow: orders -> closed days -> online model -> coherent forecasts.

    events --demand_relevant--demand_key--demand_engine (one keyed state)--demand_unkey--> writes

The work itself is :class:`processors.demand_engine.DemandEngine` (docs/demand.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import bytewax.operators as op
import redis
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

from processors.demand_engine import _FAMILIES, DemandEngine, DemandSettings
from processors.reconcile import LEVELS
from processors.records import Event
from processors.writes import RedisWrite
from streams.settings import Settings

__all__ = ["DemandEngine", "DemandFlow", "DemandSettings", "demand_report"]

NAME = "demand"


class DemandFlow:
    """FlowExtension ``demand``: daily forecasts for every level of the hierarchy."""

    name = NAME

    def __init__(self, config: DemandSettings | None = None) -> None:
        self.config = config or DemandSettings()
        self.output: Stream[RedisWrite] | None = None  # set by build(); the supply flow reads it

    def build(self, events: Stream[Event], settings: Settings) -> Stream[RedisWrite]:
        cfg, tz = self.config, settings.run.timezone

        relevant = op.filter(f"{NAME}_relevant", events, lambda e: e.family in _FAMILIES)
        keyed = op.key_on(f"{NAME}_key", relevant, lambda _e: "all")
        out = op.stateful_batch(
            f"{NAME}_engine", keyed, lambda state: _EngineLogic(state or DemandEngine(cfg, tz))
        )
        self.output = op.key_rm(f"{NAME}_unkey", out)
        return self.output


class _EngineLogic(StatefulBatchLogic[Event, RedisWrite, DemandEngine]):
    """Runs the engine over a batch, then republishes once if series were added."""

    def __init__(self, engine: DemandEngine) -> None:
        self.engine = engine

    def on_batch(self, values: list[Event]) -> tuple[Iterable[RedisWrite], bool]:
        writes: list[RedisWrite] = []
        for e in values:
            writes.extend(self.engine.on_event(e))
        writes.extend(self.engine.flush())
        return writes, StatefulBatchLogic.RETAIN

    def snapshot(self) -> DemandEngine:
        return self.engine


def demand_report(client: redis.Redis, prefix: str) -> str:
    """Prequential scores per level and horizon, as a text table (``retailpulse report demand``)."""
    rows = [f"{'level':<15}{'h':>4}{'n':>10}{'MAE':>10}{'RMSE':>10}{'MAE naive':>11}"
            f"{'MASE':>8}{'cover':>8}"]  # fmt: skip
    for level in LEVELS:
        for h in (1, 7, 14, 28):
            raw = client.hgetall(f"{prefix}:v1:demand_score:{level}:h{h}")
            if not raw:
                continue
            s = {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in raw.items()}
            rows.append(
                f"{level:<15}{h:>4}{int(s['n']):>10}{s['mae']:>10.3f}{s['rmse']:>10.3f}"
                f"{s['mae_naive']:>11.3f}{s['mase']:>8.3f}{s['coverage_p10_p90']:>8.2f}"
            )
    status = client.hgetall(f"{prefix}:v1:demand_status:flow")
    if status:
        st = {(k.decode() if isinstance(k, bytes) else k): v for k, v in status.items()}
        rows.append("status: " + ", ".join(f"{k}={_s(v)}" for k, v in sorted(st.items())))
    if len(rows) == 1:
        return "no demand scores yet (has the demand flow closed a day?)"
    return "\n".join(rows)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
