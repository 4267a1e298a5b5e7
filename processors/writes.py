"""What a step wants written to Redis, as plain data; the Redis sink (infra/) performs it.

Steps stay free of Redis imports and of the key prefix: they name a kind and an entity,
the sink builds ``<prefix>:v1:<kind>:<entity>`` (docs/redis.md lists every kind).
Every write carries a version (an event time, an offset or a monotonic count): the sink
skips a write older than what Redis holds, so a replayed epoch after a resume does no harm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from processors.ingest import IngestTotals

__all__ = ["HashWrite", "ingest_writes"]


@dataclass(frozen=True, slots=True)
class HashWrite:
    """Set ``fields`` on hash ``<prefix>:v1:<kind>:<entity>`` unless its stored version is newer."""

    kind: str
    entity: str
    fields: Mapping[str, str | int | float]
    version: int
    ttl_ms: int = 0  # 0: no expiry


def ingest_writes(item: tuple[str, IngestTotals]) -> list[HashWrite]:
    """Totals of one family -> its ``ingest`` hash and its ``offsets`` hash.

    >>> t = IngestTotals(5, 1, (("decode", 1),), 1_700_000_000_000, (("t:0", 6),))
    >>> [w.kind for w in ingest_writes(("orders", t))]
    ['ingest', 'offsets']
    >>> ingest_writes(("orders", t))[0].fields["dead_letters:decode"]
    1
    """
    family, totals = item
    fields: dict[str, str | int | float] = {
        "events": totals.events,
        "dead_letters": totals.dead_letters,
        "last_event_time": -1 if totals.last_event_time is None else totals.last_event_time,
    }
    fields.update({f"dead_letters:{stage}": n for stage, n in totals.dead_letters_by_stage})
    return [
        HashWrite("ingest", family, fields, totals.version),
        HashWrite("offsets", family, dict(totals.offsets), totals.version),
    ]
