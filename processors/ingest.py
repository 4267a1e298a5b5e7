"""Per-family ingest counters: events accepted, dead letters, last event time, offsets.

The decode step summarises each batch into one small :class:`IngestDelta` per family, so
only these few numbers (not the events) are routed to the worker that owns the family's
counter. The counter's output is absolute totals, so writing it twice (a replayed epoch
after a resume) leaves Redis unchanged.

>>> from processors.records import Event
>>> e = Event("orders", "S1", {}, 1_000, 201, "t", 0, 7)
>>> deltas = dict(summarize([e, e]))
>>> deltas["orders"].events, deltas["orders"].offsets
(2, {'t:0': 8})
>>> state, totals = accumulate(None, deltas["orders"])
>>> totals.events, totals.last_event_time
(2, 1000)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from processors.records import DeadLetter, Event

__all__ = ["IngestDelta", "IngestTotals", "accumulate", "summarize"]


@dataclass(slots=True)
class IngestDelta:
    events: int = 0
    dead_letters: int = 0
    dead_letters_by_stage: dict[str, int] = field(default_factory=dict)
    max_event_time: int | None = None
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset


@dataclass(frozen=True, slots=True)
class IngestTotals:
    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    events: int
    dead_letters: int
    dead_letters_by_stage: tuple[tuple[str, int], ...]
    last_event_time: int | None
    offsets: tuple[tuple[str, int], ...]

    @property
    def version(self) -> int:
        """Grows with every record counted: the guard for idempotent Redis writes."""
        return self.events + self.dead_letters


def summarize(items: Iterable[Event | DeadLetter]) -> list[tuple[str, IngestDelta]]:
    """One delta per family for a batch of decoded events and dead letters."""
    deltas: dict[str, IngestDelta] = {}
    for item in items:
        delta = deltas.get(item.family)
        if delta is None:
            delta = deltas[item.family] = IngestDelta()
        if isinstance(item, Event):
            delta.events += 1
            if delta.max_event_time is None or item.event_time > delta.max_event_time:
                delta.max_event_time = item.event_time
            topic, partition, offset = item.topic, item.partition, item.offset
        else:
            delta.dead_letters += 1
            stage = item.stage
            delta.dead_letters_by_stage[stage] = delta.dead_letters_by_stage.get(stage, 0) + 1
            src = item.source
            topic, partition, offset = src.topic, src.partition, src.offset
        where = f"{topic}:{partition}"
        if offset + 1 > delta.offsets.get(where, -1):
            delta.offsets[where] = offset + 1
    return list(deltas.items())


def accumulate(state: IngestTotals | None, delta: IngestDelta) -> tuple[IngestTotals, IngestTotals]:
    """Stateful-map step: fold a delta into the family's totals; emit the new totals."""
    if state is None:
        state = IngestTotals(0, 0, (), None, ())
    by_stage = dict(state.dead_letters_by_stage)
    for stage, n in delta.dead_letters_by_stage.items():
        by_stage[stage] = by_stage.get(stage, 0) + n
    offsets = dict(state.offsets)
    for where, nxt in delta.offsets.items():
        offsets[where] = max(nxt, offsets.get(where, 0))
    times = [t for t in (state.last_event_time, delta.max_event_time) if t is not None]
    totals = IngestTotals(
        events=state.events + delta.events,
        dead_letters=state.dead_letters + delta.dead_letters,
        dead_letters_by_stage=tuple(sorted(by_stage.items())),
        last_event_time=max(times) if times else None,
        offsets=tuple(sorted(offsets.items())),
    )
    return totals, totals
