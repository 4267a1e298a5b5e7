"""The one Redis sink every flow writes through.

Per batch: writes to the same key are collapsed to the newest version, then sent in one
pipeline (a round trip costs ~85 us of client CPU; a pipelined write ~13 us). Each hash
write is a small Lua script that compares versions and sets fields atomically, so an older
write (a replayed epoch after a resume, a late duplicate) never overwrites a newer one.

When Redis is slow, restarting or unreachable the sink retries the same batch with
exponential backoff; it blocks meanwhile, so Bytewax stops pulling input and memory stays
bounded. After ``retry_timeout_s`` without success it fails loudly (:class:`DeliveryError`)
and the flow stops before its input offsets move past the unwritten batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from processors.writes import HashWrite
from streams.errors import DeliveryError

__all__ = ["CONTRACT_VERSION", "RedisSink", "RedisWriter", "redis_key"]

log = logging.getLogger(__name__)

CONTRACT_VERSION = "v1"  # the key layout's version (docs/redis.md); bump on breaking change
VERSION_FIELD = "_version"

# KEYS[1] hash; ARGV[1] version, ARGV[2] ttl ms (0: none), ARGV[3..] field, value pairs.
# ">" (not ">=") lets a replay of the same version rewrite identical values: harmless.
_GUARDED_HSET = """
local current = redis.call('HGET', KEYS[1], '_version')
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], '_version', ARGV[1], unpack(ARGV, 3))
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

_RETRYABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.ReadOnlyError,  # a replica promoted mid-failover
)


def redis_key(prefix: str, kind: str, entity: str) -> str:
    """``redis_key("rp", "ingest", "orders")`` -> ``"rp:v1:ingest:orders"``."""
    return f"{prefix}:{CONTRACT_VERSION}:{kind}:{entity}"


def _collapse(writes: Sequence[HashWrite]) -> list[HashWrite]:
    """Keep the newest write per key (ties: the later one) so a batch costs one per key."""
    newest: dict[tuple[str, str], HashWrite] = {}
    for w in writes:
        key = (w.kind, w.entity)
        seen = newest.get(key)
        if seen is None or w.version >= seen.version:
            newest[key] = w
    return list(newest.values())


class RedisWriter:
    """Writes batches of :class:`HashWrite` with version guards, retrying through outages."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        retry_timeout_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.prefix = prefix
        self._client = redis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
        )
        self._script = self._client.register_script(_GUARDED_HSET)
        self._retry_timeout_s = retry_timeout_s
        self._clock = clock
        self._sleep = sleep

    def write(self, writes: Sequence[HashWrite]) -> int:
        """Write a batch; return how many keys were sent (stale ones are skipped by Redis)."""
        batch = _collapse(writes)
        if not batch:
            return 0
        deadline = self._clock() + self._retry_timeout_s
        delay = 0.05
        while True:
            try:
                self._send(batch)
                return len(batch)
            except _RETRYABLE as exc:
                if self._clock() + delay > deadline:
                    raise DeliveryError(
                        f"Redis did not accept a batch of {len(batch)} writes for "
                        f"{self._retry_timeout_s:.0f} s (last error: {exc}); stopping so no "
                        "input moves past them (raise redis.retry_timeout_s to wait longer)"
                    ) from exc
                log.warning("Redis write failed (%s); retrying in %.2f s", exc, delay)
                self._sleep(delay)
                delay = min(delay * 2, 5.0)

    def _send(self, batch: Sequence[HashWrite]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for w in batch:
            args: list[Any] = [w.version, w.ttl_ms]
            for field, value in w.fields.items():
                args.append(field)
                args.append(value)
            self._script(keys=[redis_key(self.prefix, w.kind, w.entity)], args=args, client=pipe)
        pipe.execute()

    def close(self) -> None:
        self._client.close()


class _RedisSinkPartition(StatelessSinkPartition[HashWrite]):
    def __init__(self, writer: RedisWriter) -> None:
        self._writer = writer

    def write_batch(self, items: list[HashWrite]) -> None:
        self._writer.write(items)

    def close(self) -> None:
        self._writer.close()


class RedisSink(DynamicSink[HashWrite]):
    """Bytewax sink: one :class:`RedisWriter` (one connection) per worker."""

    def __init__(self, url: str, *, prefix: str, retry_timeout_s: float = 300.0) -> None:
        self._url = url
        self._prefix = prefix
        self._retry_timeout_s = retry_timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisSinkPartition:
        writer = RedisWriter(self._url, prefix=self._prefix, retry_timeout_s=self._retry_timeout_s)
        return _RedisSinkPartition(writer)
