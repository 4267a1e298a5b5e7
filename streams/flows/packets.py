"""Packets: how events, moves and covers cross between worker processes.

With several processes every item that crosses to another worker is pickled by Bytewax
(twice: once to size the message, once to write it) and unpickled there, one call per
item. So the flows send one *packet* per upstream batch instead of one item per event
(:class:`Packer`; docs/scaling.md): a packet of a few hundred events costs one encoding
instead of hundreds, and keeps it for Bytewax's second pickle.
"""

from __future__ import annotations

import marshal
import pickle
from collections.abc import Callable, Iterable
from typing import Any

from processors.records import Event
from processors.supply_impact import Cover

__all__ = ["CoverPacket", "EventPacket", "Packer", "Packet"]


class Packet(list[Any]):
    """A list that crosses processes as one blob, encoded once however often it is pickled.

    Bytewax pickles every item that crosses to another process twice: once to size the
    message, once to write it. A packet encodes its items on the first call and keeps the
    bytes for the second (a packet is not changed once sent). The blob is :mod:`marshal`
    when every item is a builtin value (str, int, float, tuple, list, dict, None, bytes):
    it writes and reads them ~1.4x faster than pickle (``benchmarks/bench_serde.py``,
    ``packets``); anything else (a dead letter, a forecast block) falls back to pickle. Subclasses
    turn their items into builtin rows and back (:class:`EventPacket`). Both ends of a
    cluster run the same Python and package version (docs/scaling.md), which marshal
    needs. Within one process nothing is encoded and this costs nothing.

    >>> p = Packet([("sale", "SK-1", 2, 7)])
    >>> q = pickle.loads(pickle.dumps(p))
    >>> q == p, type(q).__name__, p._blob[:1]
    (True, 'Packet', b'M')
    >>> Packet([object()]).__reduce__()[1][1][:1]  # not a builtin: pickled
    b'P'
    """

    __slots__ = ("_blob",)

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__(items)
        self._blob: bytes | None = None

    def _rows(self) -> list[Any]:
        """The items as builtin values (what goes on the wire)."""
        return list(self)

    @staticmethod
    def _items(rows: list[Any]) -> list[Any]:
        """:meth:`_rows` undone."""
        return rows

    def __reduce__(self) -> tuple[Callable[[type[Packet], bytes], Packet], tuple[Any, ...]]:
        if self._blob is None:
            self._blob = _encode(self._rows())
        return (_unpack, (type(self), self._blob))


def _encode(rows: list[Any]) -> bytes:
    try:
        return b"M" + marshal.dumps(rows)
    except ValueError:  # marshal carries builtins only
        return b"P" + pickle.dumps(rows, pickle.HIGHEST_PROTOCOL)


def _unpack(cls: type[Packet], blob: bytes) -> Packet:
    body = memoryview(blob)[1:]
    rows = marshal.loads(body) if blob[:1] == b"M" else pickle.loads(body)
    return cls(cls._items(rows))


class EventPacket(Packet):
    """A packet of :class:`Event` (dead letters may ride along): each event travels as the
    plain tuple of its fields and is rebuilt in one ``tuple.__new__`` call.

    >>> e = Event("orders", "k", {"lines": [{"sku": "A", "quantity": 2}]}, 5, 1, "t", 0, 9)
    >>> q = pickle.loads(pickle.dumps(EventPacket([e, e])))
    >>> q == [e, e], type(q[0]).__name__, type(q).__name__
    (True, 'Event', 'EventPacket')
    """

    __slots__ = ()

    def _rows(self) -> list[Any]:
        return [tuple(x) if type(x) is Event else x for x in self]

    @staticmethod
    def _items(rows: list[Any]) -> list[Any]:
        new = tuple.__new__
        return [new(Event, r) if type(r) is tuple else r for r in rows]


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
        mine = EventPacket(e for e in batch if e.family in families)
        return [(self.key, mine)] if mine else []


class CoverPacket(Packet):
    """A store's ``(sku, Cover)`` pairs; each crosses as one plain tuple.

    >>> got = pickle.loads(pickle.dumps(CoverPacket([("SK-1", Cover(3, 1.5, 2.0, 7))])))
    >>> got, type(got[0][1]).__name__
    ([('SK-1', Cover(on_hand=3, daily_demand=1.5, days_of_cover=2.0, t=7))], 'Cover')
    """

    __slots__ = ()

    def _rows(self) -> list[Any]:
        return [(sku, *cover) for sku, cover in self]

    @staticmethod
    def _items(rows: list[Any]) -> list[Any]:
        new = tuple.__new__
        return [(r[0], new(Cover, r[1:])) for r in rows]
