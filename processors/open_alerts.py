"""The open alerts as a sorted set: one member per open alert, holding its newest state.

The alert stream keeps every update, so "which alerts are open now" is a fold over it, and
folding 500 entries in a reader cost 25 ms (benchmarks/bench_serving.py). This keeps the
answer ready: each stream entry replaces its alert's member (ZREM the old JSON, ZADD the
new, score ``opened_at``); a ``closed`` entry only removes it. Replaying the same entries
replays the same ZREM/ZADD sequence, so the set ends the same.

>>> book = OpenAlerts("alerts_open", "supply")
>>> f = {"alert_id": "A1", "status": "open", "opened_at": 5}
>>> [w.score for w in book.update(f, 5, 0)]
[5.0]
>>> [w.score for w in book.update({**f, "status": "update"}, 6, 0)]  # old out, new in
[None, 5.0]
>>> [w.score for w in book.update({**f, "status": "closed"}, 7, 0)], len(book)
([None], 0)
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from processors.writes import ZSetWrite

__all__ = ["OpenAlerts"]


class OpenAlerts:
    """Alert id -> its member in ``<prefix>:v1:<kind>:<entity>``; picklable engine state."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(self, kind: str, entity: str) -> None:
        self.kind, self.entity = kind, entity
        self.members: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.members)

    def update(self, fields: Mapping[str, object], ms: int, seq: int) -> list[ZSetWrite]:
        """The set's writes for the stream entry ``ms-seq`` of one alert (its whole state)."""
        alert_id = str(fields["alert_id"])
        out: list[ZSetWrite] = []
        old = self.members.pop(alert_id, None)
        if old is not None:
            out.append(ZSetWrite(self.kind, self.entity, old, None))
        if fields["status"] != "closed":
            member = json.dumps({**fields, "entry_id": f"{ms}-{seq}"}, sort_keys=True)
            self.members[alert_id] = member
            out.append(ZSetWrite(self.kind, self.entity, member, float(str(fields["opened_at"]))))
        return out
