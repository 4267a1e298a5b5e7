"""What the demo tells its user while it runs: first results in Redis, and progress.

A thread polls Redis (read-only) twice a second and says when the first forecasts, churn
risks and supply alert appear, how far the flows have got, and if a child process died.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Self

from infra.processes import Child
from infra.redis_sink import redis_key
from streams.errors import InfraError
from streams.settings import Settings

__all__ = ["Watcher"]

_POLL_S = 0.5
_PROGRESS_EVERY_S = 15.0


class Watcher:
    """Prints milestones with the seconds since the demo started; stops with the context."""

    def __init__(self, settings: Settings, started: float, children: Sequence[Child]) -> None:
        from infra.cluster import connect

        self._client = connect(settings.redis.require_url())
        self._prefix = settings.redis.key_prefix
        self._started = started
        self._children = list(children)
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-watch", daemon=True)
        self._last_progress = time.monotonic()
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._client.close()

    def say(self, message: str) -> None:
        from tqdm import tqdm

        with self._lock:  # tqdm.write keeps a running progress bar intact
            tqdm.write(f"[{time.monotonic() - self._started:6.1f}s] {message}")

    def wait_caught_up(self, produced: Counter[str], timeout_s: float = 3600.0) -> None:
        """Block until the flows have taken in every record produced (events + dead letters)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_children()
            done = self._processed()
            if all(done.get(family, 0) >= n for family, n in produced.items()):
                self.say(f"flows caught up: {sum(done.values()):,} records processed")
                return
            time.sleep(_POLL_S)
        raise InfraError(f"the flows did not catch up within {timeout_s:.0f} s")

    # -- the thread ------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(_POLL_S):
            try:
                self._check_children()
                self._milestones()
                if time.monotonic() - self._last_progress >= _PROGRESS_EVERY_S:
                    self._last_progress = time.monotonic()
                    self._progress()
            except InfraError as exc:
                self.say(str(exc))
                return
            except Exception as exc:  # Redis busy or restarting: say so, keep watching
                self.say(f"(watcher: {exc})")

    def _check_children(self) -> None:
        for child in self._children:
            code = child.exit_code()
            if code is not None:
                raise InfraError(f"{child.name} exited with code {code}; see {child.log_path}")

    def _key(self, kind: str, entity: str) -> str:
        return redis_key(self._prefix, kind, entity)

    def _milestones(self) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(self._key("forecast", "total:all"))
        pipe.zrevrange(self._key("churn", "value_at_risk"), 0, 0, withscores=True)
        pipe.xrevrange(self._key("alerts", "supply"), count=1)
        forecast, top_risk, alerts = pipe.execute()
        if forecast and "forecast" not in self._seen:
            self._seen.add("forecast")
            week = json.loads(forecast.get(b"mean", b"[]"))[:7]
            self.say(
                "first forecasts in Redis: total demand, next 7 days: "
                + ", ".join(f"{v:,.0f}" for v in week)
            )
        if top_risk and "churn" not in self._seen:
            self._seen.add("churn")
            member, score = top_risk[0]
            self.say(
                f"first churn risks in Redis: top value at risk {member.decode()} ({score:,.0f})"
            )
        if alerts and "alert" not in self._seen:
            self._seen.add("alert")
            _, fields = alerts[0]
            f = {k.decode(): v.decode() for k, v in fields.items()}
            self.say(
                f"first supply alert: {f.get('supplier_id')} severity {f.get('severity')} "
                f"({f.get('status')}, {len(json.loads(f.get('affected_skus', '[]')))} SKUs)"
            )

    def _processed(self) -> dict[str, int]:
        from streams.metrics import ingest_snapshot

        snapshot = ingest_snapshot(self._client, self._prefix)
        return {f: s["events"] + s["dead_letters"] for f, s in snapshot.items()}

    def _progress(self) -> None:
        from streams.metrics import ingest_snapshot

        snapshot = ingest_snapshot(self._client, self._prefix)
        events = sum(s["events"] for s in snapshot.values())
        # The demand flow's last closed day is the flows' event-time progress (a family's
        # newest event time runs ahead on whichever partition was read last).
        closed = self._client.hget(self._key("demand_status", "flow"), "last_closed_day")
        day = datetime.fromtimestamp(int(closed) / 1000, UTC).date() if closed else "-"
        self.say(f"flows: {events:,} events processed; days closed up to {day}")
