"""Events of many topics and partitions, released in one deterministic event-time order.

Bytewax reads every Kafka partition in turn, up to a batch each, so the order in which a
keyed state sees events of different partitions depends on batch sizes, on how far each
partition is ahead, on where a killed run resumed and on how many workers read. A model
fed in arrival order therefore ends in a slightly different state each run. The
:class:`Sequencer` removes that: events are held until every partition that drives the
clock has delivered past them, then leave sorted by the **total** key

    (event_time, rank of the family, topic, partition, offset)

so the same events give the same sequence however they were batched (docs/event-time.md).

* **Watermark**: the minimum over the clock partitions of each one's newest event time
  (as in Flink / Kafka Streams), less ``lateness_ms``; events strictly older leave (a
  partition at ``wm`` may still hold more records of that millisecond). Only ``clock``
  families drive it (None: every family); the others (slow dimensions such as catalog)
  ride along, held until the watermark passes them. A partition that has delivered
  nothing does not count,
  unless it was announced with :meth:`expect` (the flow knows its input partitions from
  Kafka metadata; announcing them closes the first-batch gap). An announced partition of a
  non-clock family holds the watermark only until its first event has arrived (so the
  catalog's first batch is not late behind the orders' first batch).
* **Ties**: at equal event time a lower ``rank`` leaves first: catalog and store records
  before the orders of the same millisecond.
* **Late**: an event that sorts before what already left is released at once (counted).
* **Bounded**: beyond ``max_events`` waiting, the oldest leave anyway (counted as forced).
* :meth:`flush` releases everything: the end of a bounded input, or (live) a clock
  partition that stayed idle too long (the one processing-time rule: decided by the flow).

>>> def e(family: str, part: int, t: int, offset: int = 0) -> Event:
...     return Event(family, None, {}, t, 0, family, part, offset)
>>> s = Sequencer(clock=("orders",), expected=[("orders", "orders", 0), ("orders", "orders", 1)])
>>> s.push(e("orders", 0, 10)); s.push(e("orders", 0, 30, 1)); s.pop_ready()  # 1 silent
[]
>>> s.push(e("catalog", 0, 20)); s.push(e("orders", 1, 20))
>>> [(x.family, x.event_time) for x in s.pop_ready()]  # older than 20 may leave
[('orders', 10)]
>>> s.push(e("orders", 1, 40, 1)); [(x.family, x.event_time) for x in s.pop_ready()]
[('catalog', 20), ('orders', 20)]
>>> s.push(e("orders", 1, 5, 2)); [x.event_time for x in s.pop_ready()], s.late  # late
([5], 1)
>>> [x.event_time for x in s.flush()], len(s)
([30, 40], 0)
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from processors.records import Event

__all__ = [
    "DIMENSION_RANK",
    "IDLE_RELEASE_S",
    "LIVE_CLOCK",
    "IdleTracker",
    "ReorderBuffer",
    "Sequenced",
    "Sequencer",
]

# Live mode only: a clock partition that has delivered nothing for this long (processing
# time, measured at the Bytewax edge) stops holding the watermark until it delivers again
# (docs/event-time.md). Short: in live mode it is how long a quiet topic delays results.
IDLE_RELEASE_S = 10.0

# Dimension records first at equal event time: an order of a SKU launched at that very
# millisecond must find the SKU's category (else the demand tree files it under UNKNOWN).
DIMENSION_RANK: Mapping[str, int] = {"stores": 0, "catalog": 1}
_OTHER_RANK = 2
# Live runs: the busy families drive the clock; catalog and stores records ride along.
LIVE_CLOCK = ("orders", "clickstream", "inventory", "supplier")
_NEVER = -(2**62)

_Key = tuple[int, int, str, int, int]
M = TypeVar("M")


class Sequencer:
    """Holds events until every clock partition has passed them; see the module docstring."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(
        self,
        *,
        clock: Iterable[str] | None = None,
        expected: Iterable[tuple[str, str, int]] = (),
        rank: Mapping[str, int] = DIMENSION_RANK,
        max_events: int = 250_000,
        lateness_ms: int = 0,
        min_streams: int = 1,
        inclusive: bool = False,
    ) -> None:
        if max_events < 1 or lateness_ms < 0:
            raise ValueError("max_events must be >= 1 and lateness_ms >= 0")
        self.clock = None if clock is None else frozenset(clock)
        self.rank = dict(rank)
        self.max_events = max_events
        self.lateness = lateness_ms
        self.min_streams = min_streams
        # True: events AT the watermark leave too (not a total order across partitions
        # that share a millisecond; for callers that cannot announce their partitions)
        self.inclusive = inclusive
        self.newest: dict[tuple[str, int], int] = {}  # clock partition -> newest event time
        self.waiting: set[tuple[str, int]] = set()  # announced non-clock partitions, silent
        self.idle: set[tuple[str, int]] = set()  # clock partitions idle (live) or ended
        self.ends: dict[tuple[str, int], int] = {}  # bounded input: end offset per partition
        self.heap: list[tuple[_Key, int, Event]] = []
        self.seq = 0  # only breaks ties between identical keys (a record read twice)
        self.last: _Key = (_NEVER, 0, "", 0, 0)  # the key of the newest event released
        self.late = 0
        self.forced = 0
        self.peak = 0
        self._late_now: list[Event] = []
        self.expect(expected)

    def __len__(self) -> int:
        return len(self.heap)

    @property
    def released(self) -> int:
        """Event time of the newest event released (-2**62 before any)."""
        return self.last[0]

    def expect(
        self,
        partitions: Iterable[tuple[str, str, int]],
        ends: Mapping[tuple[str, int], int] | None = None,
    ) -> None:
        """Announce ``(family, topic, partition)`` s: the watermark waits for each one's
        first event (a clock partition then keeps holding it; another does not).

        ``ends`` (bounded input): ``(topic, partition) -> end offset``. A partition whose
        last record (offset ``end - 1``) has arrived stops holding the watermark at once,
        so a topic that ended early does not keep everything waiting until the end. Ends
        must be exact (Tansu's high watermark counts record batches: the flows read the
        true ends back, streams.dataflow.input_partitions).
        """
        for family, topic, partition in partitions:
            if self.clock is None or family in self.clock:
                self.newest.setdefault((topic, partition), _NEVER)
            else:
                self.waiting.add((topic, partition))
        self.ends.update(ends or {})

    def key(self, ev: Event) -> _Key:
        return (ev.event_time, self.rank.get(ev.family, _OTHER_RANK), ev.topic, ev.partition,
                ev.offset)  # fmt: skip

    def push(self, ev: Event) -> None:
        part = (ev.topic, ev.partition)
        if self.waiting:
            self.waiting.discard(part)
        if self.clock is None or ev.family in self.clock:
            if self.idle:
                self.idle.discard(part)  # it speaks again: it holds the watermark again
            if ev.event_time > self.newest.get(part, _NEVER):
                self.newest[part] = ev.event_time
            if self.ends and ev.offset >= self.ends.get(part, 2**62) - 1:
                self.idle.add(part)  # its last record: nothing older can follow from it
        key = self.key(ev)
        if key < self.last:  # sorts before what already left: late, released next
            self.late += 1
            self._late_now.append(ev)
            return
        heapq.heappush(self.heap, (key, self.seq, ev))
        self.seq += 1
        if len(self.heap) > self.peak:
            self.peak = len(self.heap)

    def push_all(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.push(ev)

    def set_idle(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Live mode: these partitions stop holding the watermark until they deliver again
        (when every partition is idle, everything waiting may leave)."""
        for part in partitions:
            if part in self.newest:
                self.idle.add(part)
            self.waiting.discard(part)

    def partitions(self) -> list[tuple[str, int]]:
        """Every partition the watermark waits for or has heard from."""
        return [*self.newest, *self.waiting]

    def watermark(self) -> int:
        """Events strictly older than this may leave (inclusive=True: at it too)."""
        if self.waiting or len(self.newest) < self.min_streams:
            return _NEVER
        if self.idle:
            active = [t for p, t in self.newest.items() if p not in self.idle]
            if not active:
                return 2**62
            return min(active) - self.lateness
        return min(self.newest.values(), default=_NEVER) - self.lateness

    def pop_ready(self) -> list[Event]:
        """Late events, then every waiting event at or before the watermark, in key order."""
        out, self._late_now = self._late_now, []
        # Strictly before the watermark: a partition whose newest record is at ``wm`` may
        # still deliver more records of that same millisecond.
        wm, heap = self.watermark() - (0 if self.inclusive else 1), self.heap
        while heap and (heap[0][0][0] <= wm or len(heap) > self.max_events):
            if heap[0][0][0] > wm:
                self.forced += 1
            key, _, ev = heapq.heappop(heap)
            self.last = max(self.last, key)
            out.append(ev)
        return out

    def flush(self) -> list[Event]:
        """Everything still waiting, in key order (end of input, or an idle partition)."""
        out, self._late_now = self._late_now, []
        while self.heap:
            key, _, ev = heapq.heappop(self.heap)
            self.last = max(self.last, key)
            out.append(ev)
        return out

    pop_all = flush

    def stats(self) -> dict[str, Any]:
        return {"buffered": len(self.heap), "late": self.late, "forced": self.forced,
                "peak": self.peak}  # fmt: skip


class ReorderBuffer(Sequencer):
    """The customer book's own buffer for direct (non-flow) use: orders and clicks drive
    the clock, everything it is given waits (the book applies catalog records at once).

    >>> def e(part: int, t: int) -> Event:
    ...     return Event("orders", None, {}, t, 0, "orders", part, t)
    >>> b = ReorderBuffer()
    >>> b.push(e(0, 10)); b.push(e(0, 30)); [x.event_time for x in b.pop_ready()]
    [10, 30]
    >>> b.push(e(1, 20)); b.push(e(0, 50)); [x.event_time for x in b.pop_ready()]  # 20: late
    [20]
    >>> b.push(e(1, 60)); [x.event_time for x in b.pop_ready()], b.late
    ([50], 1)
    """

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 2

    FAMILIES = ("orders", "clickstream")

    def __init__(self, max_events: int = 250_000, min_streams: int = 1) -> None:
        # inclusive: the book's historic rule (the flows use the strict one)
        super().__init__(
            clock=self.FAMILIES, max_events=max_events, min_streams=min_streams, inclusive=True
        )


class IdleTracker:
    """Live mode, at the Bytewax edge: when each partition last delivered (processing time,
    passed in), so quiet ones can be declared idle. Not snapshotted: after a restart every
    partition gets a fresh ``idle_s``.

    >>> t0 = datetime(2026, 1, 1)
    >>> s = Sequencer(expected=[("orders", "orders", 0), ("orders", "orders", 1)])
    >>> tr = IdleTracker(5.0)
    >>> s.push(Event("orders", None, {}, 10, 0, "orders", 0, 0)); tr.arrived(s, [], t0)
    >>> s.pop_ready(), tr.due(s) == t0 + timedelta(seconds=5)
    ([], True)
    >>> tr.expire(s, t0 + timedelta(seconds=6)); [e.event_time for e in s.pop_ready()]
    [10]
    """

    def __init__(self, idle_s: float) -> None:
        self.idle = timedelta(seconds=idle_s)
        self.last: dict[tuple[str, int], datetime] = {}

    def arrived(self, seq: Sequencer, events: Iterable[Event], now: datetime) -> None:
        for ev in events:
            self.last[(ev.topic, ev.partition)] = now
        for part in seq.partitions():  # announced ones: their time starts now
            self.last.setdefault(part, now)

    def due(self, seq: Sequencer) -> datetime | None:
        """When the next partition would turn idle, if events are waiting."""
        if not len(seq):
            return None
        holding = set(seq.partitions()) - seq.idle
        times = [at for p, at in self.last.items() if p in holding]
        return min(times) + self.idle if times else None

    def expire(self, seq: Sequencer, now: datetime) -> None:
        seq.set_idle([p for p, at in self.last.items() if now - at >= self.idle])


class Sequenced(Generic[M]):
    """A model flow's keyed state: the model and the sequencer in front of it, snapshotted
    together (a resume must not lose the events still waiting)."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    __slots__ = ("model", "sequencer")

    def __init__(self, model: M, sequencer: Sequencer) -> None:
        self.model = model
        self.sequencer = sequencer
