"""The plumbing every model flow's engine step shares: a sequencer in front of the model.

Events go into the flow's :class:`~processors.sequencer.Sequencer`; what it releases, in
event-time order (docs/event-time.md), is applied by the subclass's ``_apply``. Live runs
also get the idle-partition timer (the one processing-time rule, read here at the edge).

Events reach the engine's key as *packets*, one list per upstream batch (:class:`Packer`),
not one item per event: with several processes every item that crosses to the engine's
worker is pickled (twice, by Bytewax) and unpickled on its own, so a packet of a few
hundred events costs one pickle call instead of hundreds (docs/scaling.md), and a
:class:`Packet` keeps its first pickle for Bytewax's second one.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from bytewax.operators import StatefulBatchLogic

from processors.records import DeadLetter, Event
from processors.sequencer import IdleTracker, Sequenced
from processors.writes import RedisWrite

__all__ = ["Out", "Packer", "Packet", "SequencedLogic", "guarded"]

M = TypeVar("M")
Out = list[RedisWrite | DeadLetter]


class Packet(list[Any]):
    """A list that pickles its items once however often it is pickled.

    Bytewax pickles every item that crosses to another process twice: once to size the
    message, once to write it. A packet keeps the bytes of the first call for the second
    (a packet is not changed once sent), which saves a third of its pickling (two dumps
    and a load become one of each; py-spy: dumps was 17 % of a 2-process run's busier
    process). Within one process nothing is pickled and this costs nothing.

    >>> p = Packet([1, "a"])
    >>> pickle.loads(pickle.dumps(p)) == [1, "a"], type(pickle.loads(pickle.dumps(p))).__name__
    (True, 'Packet')
    >>> p._blob is not None  # kept for the next call
    True
    """

    __slots__ = ("_blob",)

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__(items)
        self._blob: bytes | None = None

    def __reduce__(self) -> tuple[Callable[[bytes], Packet], tuple[bytes]]:
        if self._blob is None:
            self._blob = pickle.dumps(list(self), pickle.HIGHEST_PROTOCOL)
        return (_unpack, (self._blob,))


def _unpack(blob: bytes) -> Packet:
    return Packet(pickle.loads(blob))


class Packer:
    """A batch of events -> at most one ``(key, [the events of families])`` item.

    >>> order = Event("orders", "k", {}, 1, 0, "t", 0, 7)
    >>> click = Event("clickstream", "k", {}, 1, 0, "t", 0, 8)
    >>> [(key, [e.offset for e in packet])
    ...  for key, packet in Packer("demand", frozenset({"orders"}))([order, click, order])]
    [('demand', [7, 7])]
    >>> Packer("demand", frozenset({"catalog"}))([order])
    []
    """

    def __init__(self, key: str, families: frozenset[str]) -> None:
        self.key = key
        self.families = families

    def __call__(self, batch: list[Event]) -> list[tuple[str, list[Event]]]:
        families = self.families
        mine = Packet(e for e in batch if e.family in families)
        return [(self.key, mine)] if mine else []


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
