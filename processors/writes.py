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
from dataclasses import dataclass

from processors.ingest import IngestTotals

__all__ = ["HashWrite", "RedisWrite", "StreamAdd", "ZSetWrite", "ingest_writes"]

Scalar = str | int | float


@dataclass(frozen=True, slots=True)
class HashWrite:
    """Set ``fields`` on hash ``<prefix>:v1:<kind>:<entity>`` unless its stored version is newer.

    With ``channel``, the fields are also published (JSON) on ``<prefix>:v1:<channel>`` when
    the version is strictly newer than the stored one.
    """

    kind: str
    entity: str
    fields: Mapping[str, Scalar]
    version: int
    ttl_ms: int = 0  # 0: no expiry
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class StreamAdd:
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


@dataclass(frozen=True, slots=True)
class ZSetWrite:
    """ZADD ``member`` with ``score`` to ``<prefix>:v1:<kind>:<entity>`` (None: ZREM)."""

    kind: str
    entity: str
    member: str
    score: float | None


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
