"""The demand forecasting flow: orders -> closed days -> online model -> coherent forecasts.

    events --demand_relevant--demand_key--demand_engine (one keyed state: a Sequencer
           putting events in event-time order (docs/event-time.md), then the engine)
           --demand_split_errors--+--demand_unkey--> writes
                                  +--demand_errors--> process:demand dead letters

The work itself is :class:`processors.demand_engine.DemandEngine` (docs/demand.md). An
event the engine raises on becomes a dead letter (docs/dead-letters.md) and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
import redis
from bytewax.dataflow import Stream

from processors.demand_engine import _FAMILIES, DemandEngine, DemandSettings
from processors.reconcile import LEVELS
from processors.records import DeadLetter, Event
from processors.sequencer import IDLE_RELEASE_S, LIVE_CLOCK, Sequenced, Sequencer
from processors.writes import RedisWrite
from streams.dataflow import InputPartitions
from streams.decode import EventDeadLetters, process_failures
from streams.flows.sequenced import Out, SequencedLogic, guarded
from streams.settings import Settings

__all__ = ["DemandEngine", "DemandFlow", "DemandSettings", "demand_report"]

NAME = "demand"


class DemandFlow:
    """FlowExtension ``demand``: daily forecasts for every level of the hierarchy.

    ``fault`` (tests only) is called on every event before the engine sees it; what it
    raises is handled like an engine error, so tests can make the model fail on demand.
    """

    name = NAME

    def __init__(
        self, config: DemandSettings | None = None, *, fault: Callable[[Event], None] | None = None
    ) -> None:
        self.config = config or DemandSettings()
        self.fault = fault
        self.output: Stream[RedisWrite] | None = None  # set by build(); the supply flow reads it
        self.errors: Stream[DeadLetter] | None = None  # set by build(): process:demand letters
        # Set by build_flow from Kafka metadata before build() (None: TestingSource input).
        self.input_partitions: InputPartitions | None = None

    def build(self, events: Stream[Event], settings: Settings) -> Stream[RedisWrite]:
        cfg, tz, fault = self.config, settings.run.timezone, self.fault
        failures = process_failures(NAME, settings)

        parts = self.input_partitions
        idle_s = IDLE_RELEASE_S if parts is not None and parts.live else None
        relevant = op.filter(f"{NAME}_relevant", events, lambda e: e.family in _FAMILIES)
        # Its own key (not a shared "all"): engines of different flows can then be placed
        # on different workers (docs/scaling.md).
        keyed = op.key_on(f"{NAME}_key", relevant, lambda _e: NAME)
        out = op.stateful_batch(
            f"{NAME}_engine",
            keyed,
            lambda state: _EngineLogic(state or new_state(cfg, tz, parts), failures, fault, idle_s),
        )
        split = op.branch(f"{NAME}_split_errors", out, _is_write)
        self.output = op.key_rm(f"{NAME}_unkey", split.trues)  # type: ignore[arg-type]
        self.errors = op.key_rm(f"{NAME}_errors", split.falses)  # type: ignore[arg-type]
        return self.output


def _is_write(kv: tuple[str, Any]) -> bool:
    return not isinstance(kv[1], DeadLetter)


def new_state(
    cfg: DemandSettings, tz: str, partitions: InputPartitions | None
) -> Sequenced[DemandEngine]:
    # Bounded: every partition drives the clock (an ended one stops holding it), so no
    # catalog or store record is late; at equal time they leave first. Live: a catalog or
    # store record would hold the clock at its time until the idle release (10 s), so
    # those slow dimensions ride along instead (docs/event-time.md).
    live = partitions is not None and partitions.live
    seq = Sequencer(clock=LIVE_CLOCK if live else None, inclusive=partitions is None)
    if partitions is not None:
        seq.expect(partitions.expected(_FAMILIES), partitions.ends(_FAMILIES))
    return Sequenced(DemandEngine(cfg, tz), seq)


class _EngineLogic(SequencedLogic[DemandEngine]):
    """Runs the engine over what the sequencer releases, in event-time order."""

    def __init__(
        self,
        state: Sequenced[DemandEngine],
        failures: EventDeadLetters,
        fault: Callable[[Event], None] | None = None,
        idle_s: float | None = None,
    ) -> None:
        super().__init__(state, idle_s)
        self.engine = state.model
        self.failures = failures
        self.fault = fault

    def _apply(self, events: list[Event], *, final: bool) -> Out:
        engine = self.engine
        out: Out = []
        for e in events:
            # The raising entry point: on_event() swallows errors into a counter, but a bad
            # event must reach the dead-letter topic with its reason (docs/dead-letters.md).
            out.extend(guarded(e, engine._on_event, self._failed, self.fault))
            if engine.stale:
                # Republish right after the event that added series, not at the end of the
                # batch: the republished values then do not depend on where batches end.
                out.extend(engine.flush())
        return out

    def _failed(self, e: Event, exc: Exception) -> DeadLetter:
        self.engine.bad_events += 1
        return self.failures.dead_letter(e, exc)


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
