"""What a Redis writer has written, to rewrite after Redis lost it (docs/operations.md).

The sink (infra/redis_sink.py) records every accepted write here, the way its guarded
scripts apply it; when its marker shows the server lost writes, it replays this mirror.

>>> from processors.writes import HashWrite
>>> m = Mirror()
>>> m.record("k", HashWrite("customer", "C1", {"a": 1}, 5), now=0.0)
>>> m.record("k", HashWrite("customer", "C1", {"b": 2}, 4), now=0.0)  # older: skipped
>>> m.hashes["k"].fields, len(m)
({'a': 1}, 1)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from processors.writes import HashWrite, RedisWrite, StreamAdd

__all__ = ["Mirror", "left_ms", "pairs"]


def pairs(fields: Any) -> list[Any]:
    out: list[Any] = []
    for name, value in fields.items():
        out.append(name)
        out.append(value)
    return out


@dataclass(slots=True)
class _HashState:
    version: int
    fields: dict[str, Any]
    ttl_ms: int
    written_at: float  # writer clock, s: what is left of the TTL on a restore


@dataclass(slots=True)
class Mirror:
    """What this writer has written, to rewrite after Redis lost it (docs/operations.md)."""

    hashes: dict[str, _HashState] = field(default_factory=dict)
    zsets: dict[str, dict[str, float]] = field(default_factory=dict)
    streams: dict[str, deque[tuple[int, int, list[Any]]]] = field(default_factory=dict)

    def record(self, key: str, w: RedisWrite, now: float) -> None:
        """Apply ``w`` (already accepted by Redis) the way the guarded scripts do."""
        if isinstance(w, HashWrite):
            h = self.hashes.get(key)
            if h is None:
                self.hashes[key] = _HashState(w.version, dict(w.fields), w.ttl_ms, now)
            elif w.version >= h.version:
                h.version, h.ttl_ms, h.written_at = w.version, w.ttl_ms, now
                h.fields.update(w.fields)
        elif isinstance(w, StreamAdd):
            entries = self.streams.get(key)
            if entries is None:
                entries = self.streams[key] = deque(maxlen=max(1, w.maxlen))
            if not entries or (w.ms, w.seq) > entries[-1][:2]:
                entries.append((w.ms, w.seq, pairs(w.fields)))
        elif w.score is None:
            members = self.zsets.get(key)
            if members is not None:
                members.pop(w.member, None)
        else:
            self.zsets.setdefault(key, {})[w.member] = w.score

    def prune(self, now: float) -> None:
        """Forget hashes whose TTL has run out (Redis has dropped them too)."""
        gone = [k for k, h in self.hashes.items() if h.ttl_ms and left_ms(h, now) <= 0]
        for k in gone:
            del self.hashes[k]

    def __len__(self) -> int:
        return len(self.hashes) + len(self.zsets) + len(self.streams)


def left_ms(h: _HashState, now: float) -> int:
    return h.ttl_ms - int((now - h.written_at) * 1000)
