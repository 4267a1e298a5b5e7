"""What a step wants written to Redis, as plain data; the Redis sink (infra/) performs it.

Steps stay free of Redis imports and of the key prefix: they name a kind and an entity,
the sink builds ``<prefix>:v1:<kind>:<entity>`` (docs/redis.md lists every kind).
Every write is safe to repeat, because Bytewax replays the last epoch after a resume:

- :class:`HashWrite` carries a version (event time, offset or monotonic count); a write
  older than what Redis holds is skipped, and its notification is sent only when the
  version is strictly newer (a replay never re-notifies);
- :class:`StreamAdd` carries an explicit entry id derived from event time; an id not
  newer than the stream's last is skipped (so is its notification);
- :class:`ZSetWrite` sets absolute scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from processors.ingest import IngestTotals

__all__ = ["HashWrite", "RedisWrite", "StreamAdd", "ZSetWrite", "ingest_writes"]

Scalar = str | int | float

# Why named tuples and not frozen dataclasses: flows build one or more writes per event
# (two per event in a replay, mostly forecasts) and a frozen dataclass pays one
# ``object.__setattr__`` call per field in ``__init__``: 3.5 us per HashWrite against
# 0.7 us here (timeit, this machine). They stay immutable, typed and picklable; equality
# also compares the type, so a HashWrite never equals a StreamAdd or a bare tuple with
# the same values (as with the dataclasses).


def _same(a: tuple[Any, ...], b: object) -> bool:
    return type(a) is type(b) and tuple.__eq__(a, b) is True


class HashWrite(NamedTuple):
    """Set ``fields`` on hash ``<prefix>:v1:<kind>:<entity>`` unless its stored version is newer.

    With ``channel``, the fields are also published (JSON) on ``<prefix>:v1:<channel>`` when
    the version is strictly newer than the stored one.

    >>> w = HashWrite("ingest", "orders", {"events": 3}, 3)
    >>> w.ttl_ms, w.channel, w == HashWrite("ingest", "orders", {"events": 3}, 3)
    (0, None, True)
    >>> w == ("ingest", "orders", {"events": 3}, 3, 0, None)
    False
    """

    kind: str
    entity: str
    fields: Mapping[str, Scalar]
    version: int
    ttl_ms: int = 0  # 0: no expiry
    channel: str | None = None

    def __eq__(self, other: object) -> bool:
        return _same(self, other)

    def __ne__(self, other: object) -> bool:
        return not _same(self, other)


class StreamAdd(NamedTuple):
    """XADD to ``<prefix>:v1:<kind>:<entity>`` with id ``<ms>-<seq>``, capped near ``maxlen``.

    With ``channel``, the entry is also published when (and only when) it was added.
    """

    kind: str
    entity: str
    fields: Mapping[str, Scalar]
    ms: int
    seq: int = 0
    maxlen: int = 10_000
    channel: str | None = None

    def __eq__(self, other: object) -> bool:
        return _same(self, other)

    def __ne__(self, other: object) -> bool:
        return not _same(self, other)


class ZSetWrite(NamedTuple):
    """ZADD ``member`` with ``score`` to ``<prefix>:v1:<kind>:<entity>`` (None: ZREM)."""

    kind: str
    entity: str
    member: str
    score: float | None

    def __eq__(self, other: object) -> bool:
        return _same(self, other)

    def __ne__(self, other: object) -> bool:
        return not _same(self, other)


RedisWrite = HashWrite | StreamAdd | ZSetWrite


def ingest_writes(item: tuple[str, IngestTotals]) -> list[HashWrite]:
    """Totals of one family -> its ``ingest`` hash and its ``offsets`` hash.

    >>> t = IngestTotals(5, 1, (("decode", 1),), 1_700_000_000_000, (("t:0", 6),))
    >>> [w.kind for w in ingest_writes(("orders", t))]
    ['ingest', 'offsets']
    >>> ingest_writes(("orders", t))[0].fields["dead_letters:decode"]
    1
    """
    family, totals = item
    fields: dict[str, Scalar] = {
        "events": totals.events,
        "dead_letters": totals.dead_letters,
        "last_event_time": -1 if totals.last_event_time is None else totals.last_event_time,
    }
    fields.update({f"dead_letters:{stage}": n for stage, n in totals.dead_letters_by_stage})
    return [
        HashWrite("ingest", family, fields, totals.version),
        HashWrite("offsets", family, dict(totals.offsets), totals.version),
    ]
