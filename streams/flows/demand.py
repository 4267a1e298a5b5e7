"""The demand forecasting flow: orders -> closed days -> online model -> coherent forecasts.

    events --demand_key (packets)--demand_engine (one keyed state: a Sequencer
           putting events in event-time order (docs/event-time.md), then the engine)
           --demand_split_errors--+--demand_split_blocks--+--demand_unkey-----------------+
                                  |                       +--demand_block_key--demand_publish
                                  |                          (run.shards keys: each renders
                                  |                          its block of the day's forecast
                                  |                          hashes)--demand_rendered--+
                                  |                                 demand_writes <----+--> writes
                                  +--demand_errors--> process:demand dead letters

The work itself is :class:`processors.demand_engine.DemandEngine` (docs/demand.md): one
state, because a day closes for every series at once and the shared model learns from all
of them. Rendering a day's forecasts as hashes, the larger part of the work, is spread over
the shards (processors/demand_publish.py, docs/scaling.md). An event the engine raises on
becomes a dead letter (docs/dead-letters.md) and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
import redis
from bytewax.dataflow import Stream

from processors.demand_engine import _FAMILIES, DemandEngine, DemandSettings
from processors.demand_publish import ForecastBlock
from processors.reconcile import LEVELS
from processors.records import DeadLetter, Event
from processors.sequencer import IDLE_RELEASE_S, LIVE_CLOCK, Sequenced, Sequencer
from processors.shards import Shards
from processors.writes import RedisWrite
from streams.dataflow import InputPartitions
from streams.decode import EventDeadLetters, process_failures
from streams.flows.packets import Packer, Packet
from streams.flows.sequenced import Out, SequencedLogic, guarded
from streams.settings import Settings

__all__ = ["DemandEngine", "DemandFlow", "DemandSettings", "demand_report"]

NAME = "demand"
ENGINE_SLOT = 0  # processors/shards.py: the engines' slots are 0, 1, 5 (see docs/scaling.md)


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
        # Its own placed key (slot 0; supply 1, customers 5): the flows' engines then run on
        # different workers when there are several (processors/shards.py, docs/scaling.md).
        shards = Shards(settings.run.shards)
        engine_key = shards.engine_key(NAME, slot=ENGINE_SLOT)
        # One packet of the relevant events per batch (streams/flows/sequenced.py).
        keyed = op.flat_map_batch(f"{NAME}_key", events, Packer(engine_key, _FAMILIES))
        out = op.stateful_batch(
            f"{NAME}_engine",
            keyed,
            lambda state: _EngineLogic(
                state or new_state(cfg, tz, parts), failures, fault, idle_s, shards.n
            ),
        )
        split = op.branch(f"{NAME}_split_errors", out, _is_write)
        kinds = op.branch(f"{NAME}_split_blocks", split.trues, _is_block)
        blocks = op.map(f"{NAME}_block_key", kinds.trues, _BlockKey(shards.keys(f"{NAME}_publish")))
        rendered = op.stateful_batch(f"{NAME}_publish", blocks, lambda _none: _RenderLogic())
        direct = op.key_rm(f"{NAME}_unkey", kinds.falses)
        self.output = op.merge(f"{NAME}_writes", direct, op.key_rm(f"{NAME}_rendered", rendered))
        self.errors = op.key_rm(f"{NAME}_errors", split.falses)  # type: ignore[arg-type]
        return self.output


class _RenderLogic(op.StatefulBatchLogic[Packet, RedisWrite, None]):
    """A shard's blocks -> forecast hashes; holds no state (nothing to snapshot)."""

    def on_batch(self, values: list[Packet]) -> tuple[list[RedisWrite], bool]:
        return [w for packet in values for block in packet for w in block.writes()], self.DISCARD

    def snapshot(self) -> None:
        return None


class _BlockKey:
    """A block to the key of its shard, in a one-block packet: a block crossing to another
    process is then pickled once, not twice (streams/flows/packets.py)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def __call__(self, kv: tuple[str, Any]) -> tuple[str, Packet]:
        return (self.keys[kv[1].shard], Packet([kv[1]]))


def _is_block(kv: tuple[str, Any]) -> bool:
    return isinstance(kv[1], ForecastBlock)


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
        blocks: int = 0,
    ) -> None:
        super().__init__(state, idle_s)
        self.engine = state.model
        self.engine.publish_blocks = blocks  # forecasts leave as blocks for demand_publish
        self.failures = failures
        self.fault = fault

    def _apply(self, events: list[Event], *, final: bool) -> Out:
        engine = self.engine
        out: list[Any] = []  # writes, dead letters and ForecastBlocks
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
