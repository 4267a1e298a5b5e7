"""The plumbing every model flow's engine step shares: a sequencer in front of the model.

Events go into the flow's :class:`~processors.sequencer.Sequencer`; what it releases, in
event-time order (docs/event-time.md), is applied by the subclass's ``_apply``. Live runs
also get the idle-partition timer (the one processing-time rule, read here at the edge).

Events reach the engine's key as packets, one per upstream batch
(streams/flows/packets.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from bytewax.operators import StatefulBatchLogic

from processors.records import DeadLetter, Event
from processors.sequencer import IdleTracker, Sequenced
from processors.writes import RedisWrite

__all__ = ["Out", "SequencedLogic", "guarded"]

M = TypeVar("M")
Out = list[RedisWrite | DeadLetter]


class SequencedLogic(StatefulBatchLogic[Any, "RedisWrite | DeadLetter", Any], Generic[M]):
    """Push, release in order, apply; flush at the end of input; the idle timer when live."""

    def __init__(self, state: Sequenced[M], idle_s: float | None = None) -> None:
        self.state = state
        # Live runs: quiet partitions stop holding the watermark (processing time, here).
        self.idle = None if idle_s is None else IdleTracker(idle_s)

    def _apply(self, events: list[Event], *, final: bool) -> Out:
        raise NotImplementedError

    def _push(self, events: list[Event]) -> None:
        seq = self.state.sequencer
        seq.push_all(events)
        if self.idle is not None:
            self.idle.arrived(seq, events, datetime.now(UTC))  # the edge's clock

    def on_batch(
        self, values: list[list[Event]]
    ) -> tuple[Iterable[RedisWrite | DeadLetter], bool]:
        self._push([e for packet in values for e in packet])
        return self._apply(self.state.sequencer.pop_ready(), final=False), self.RETAIN

    def on_eof(self) -> tuple[Iterable[RedisWrite | DeadLetter], bool]:
        return self._apply(self.state.sequencer.flush(), final=True), self.RETAIN

    def notify_at(self) -> datetime | None:
        return None if self.idle is None else self.idle.due(self.state.sequencer)

    def on_notify(self) -> tuple[Iterable[RedisWrite | DeadLetter], bool]:
        seq = self.state.sequencer
        if self.idle is not None:
            self.idle.expire(seq, datetime.now(UTC))
        return self._apply(seq.pop_ready(), final=False), self.RETAIN

    def snapshot(self) -> Any:
        return self.state


def guarded(
    event: Event,
    apply: Callable[[Event], Iterable[Any]],
    on_error: Callable[[Event, Exception], DeadLetter | None],
    fault: Callable[[Event], None] | None = None,
) -> list[Any]:
    """``apply(event)``, or what ``on_error`` makes of its exception: one bad event must
    not stop the flow (docs/dead-letters.md). ``fault`` is the tests' hook, run first."""
    try:
        if fault is not None:
            fault(event)
        return list(apply(event))
    except Exception as exc:
        letter = on_error(event, exc)
        return [] if letter is None else [letter]
