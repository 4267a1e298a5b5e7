"""The one Redis sink every flow writes through.

Per batch: hash writes to the same key are collapsed to the newest version, then everything
is sent in one pipeline (a round trip costs ~85 us of client CPU; a pipelined write ~13 us).
Hash and stream writes are small Lua scripts that check and write atomically, so an older
write (a replayed epoch after a resume, a late duplicate) never overwrites a newer one and
never sends its notification twice. Scripts touch one key each (channels are arguments,
not keys), so they also run on Redis Cluster.

When Redis is slow, restarting or unreachable the sink retries the same batch with
exponential backoff; it blocks meanwhile, so Bytewax stops pulling input and memory stays
bounded. After ``retry_timeout_s`` without success it fails loudly (:class:`DeliveryError`)
and the flow stops before its input offsets move past the unwritten batch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from processors.writes import HashWrite, RedisWrite, StreamAdd, ZSetWrite
from streams.errors import DeliveryError

__all__ = ["CONTRACT_VERSION", "RedisSink", "RedisWriter", "redis_key"]

log = logging.getLogger(__name__)

CONTRACT_VERSION = "v1"  # the key layout's version (docs/redis.md); bump on breaking change

# KEYS[1] hash; ARGV[1] version, ARGV[2] ttl ms (0: none), ARGV[3] channel ("": none),
# ARGV[4] message, ARGV[5..] field, value pairs. An equal version rewrites the same values
# (a replay: harmless) but does not publish again.
_GUARDED_HSET = """
local current = tonumber(redis.call('HGET', KEYS[1], '_version'))
local version = tonumber(ARGV[1])
if current and current > version then return 0 end
redis.call('HSET', KEYS[1], '_version', ARGV[1], unpack(ARGV, 5))
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
if ARGV[3] ~= '' and (not current or current < version) then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return 1
"""

# KEYS[1] stream; ARGV[1] ms, ARGV[2] seq, ARGV[3] maxlen, ARGV[4] channel ("": none),
# ARGV[5] message, ARGV[6..] field, value pairs. An id not newer than the newest entry's is
# a replay: skipped, and not published again.
_GUARDED_XADD = """
local ms, seq = tonumber(ARGV[1]), tonumber(ARGV[2])
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if newest then
  local lms, lseq = string.match(newest[1], '(%d+)-(%d+)')
  lms, lseq = tonumber(lms), tonumber(lseq)
  if ms < lms or (ms == lms and seq <= lseq) then return 0 end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], ARGV[1] .. '-' .. ARGV[2], unpack(ARGV, 6))
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
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


def channel_name(prefix: str, channel: str) -> str:
    """``channel_name("rp", "alerts")`` -> ``"rp:v1:alerts"``."""
    return f"{prefix}:{CONTRACT_VERSION}:{channel}"


def _collapse(writes: Sequence[RedisWrite]) -> list[RedisWrite]:
    """Keep the newest hash write per key (ties: the later); other writes keep their order."""
    newest: dict[tuple[str, str], HashWrite] = {}
    others: list[RedisWrite] = []
    for w in writes:
        if isinstance(w, HashWrite):
            key = (w.kind, w.entity)
            seen = newest.get(key)
            if seen is None or w.version >= seen.version:
                newest[key] = w
        else:
            others.append(w)
    return [*newest.values(), *others]


def _pairs(fields: Any) -> list[Any]:
    out: list[Any] = []
    for field, value in fields.items():
        out.append(field)
        out.append(value)
    return out


class RedisWriter:
    """Writes batches of :data:`RedisWrite` with guards, retrying through outages."""

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
        self._hset = self._client.register_script(_GUARDED_HSET)
        self._xadd = self._client.register_script(_GUARDED_XADD)
        self._retry_timeout_s = retry_timeout_s
        self._clock = clock
        self._sleep = sleep

    def write(self, writes: Sequence[RedisWrite]) -> int:
        """Write a batch; return how many commands were sent (stale ones are skipped)."""
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

    def _channel(self, channel: str | None) -> str:
        return channel_name(self.prefix, channel) if channel else ""

    def _send(self, batch: Sequence[RedisWrite]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for w in batch:
            key = redis_key(self.prefix, w.kind, w.entity)
            if isinstance(w, HashWrite):
                message = json.dumps({"key": key, **w.fields}) if w.channel else ""
                args = [w.version, w.ttl_ms, self._channel(w.channel), message, *_pairs(w.fields)]
                self._hset(keys=[key], args=args, client=pipe)
            elif isinstance(w, StreamAdd):
                message = (
                    json.dumps({"key": key, "id": f"{w.ms}-{w.seq}", **w.fields})
                    if w.channel
                    else ""
                )
                args = [w.ms, w.seq, w.maxlen, self._channel(w.channel), message]
                self._xadd(keys=[key], args=[*args, *_pairs(w.fields)], client=pipe)
            elif isinstance(w, ZSetWrite):
                if w.score is None:
                    pipe.zrem(key, w.member)
                else:
                    pipe.zadd(key, {w.member: w.score})
        pipe.execute()

    def close(self) -> None:
        self._client.close()


class _RedisSinkPartition(StatelessSinkPartition[RedisWrite]):
    def __init__(self, writer: RedisWriter) -> None:
        self._writer = writer

    def write_batch(self, items: list[RedisWrite]) -> None:
        self._writer.write(items)

    def close(self) -> None:
        self._writer.close()


class RedisSink(DynamicSink[RedisWrite]):
    """Bytewax sink: one :class:`RedisWriter` (one connection) per worker."""

    def __init__(self, url: str, *, prefix: str, retry_timeout_s: float = 300.0) -> None:
        self._url = url
        self._prefix = prefix
        self._retry_timeout_s = retry_timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisSinkPartition:
        writer = RedisWriter(self._url, prefix=self._prefix, retry_timeout_s=self._retry_timeout_s)
        return _RedisSinkPartition(writer)
