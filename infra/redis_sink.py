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

A Redis that comes back *empty* (restarted without persistence, a failover to a replica
that had not caught up) would silently lose every key not written again afterwards. So
each writer keeps a marker, ``<prefix>:v1:sink:<writer id>`` (field ``seq``: the number of
its last written batch), and reads it at the start of every batch's pipeline: same
connection, same round trip. A marker that is missing or behind means the server lost
writes; the writer then rewrites everything it has written from its **mirror**: per key,
the newest version and the union of the fields of its hashes (with the TTL that remains),
sorted-set scores, and each stream's last ``maxlen`` entries; notifications are not sent
again. The mirror costs memory of the order of the keys the flows maintain (docs/
operations.md); with ``mirror=False`` a detected loss raises :class:`DeliveryError`
instead and the state must be rebuilt by a replay.

On a Redis Cluster (``redis+cluster://``, :mod:`infra.cluster`) the pipeline is split per
node and there is one marker per primary, so any node restarted empty is seen (limits:
docs/scaling.md "Redis Cluster").
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from infra.cluster import RedisClient, connect, is_cluster_url, node_markers
from infra.sink_mirror import Mirror, left_ms, pairs
from processors.writes import HashWrite, RedisWrite, StreamAdd, ZSetWrite
from streams.errors import DeliveryError

__all__ = ["CONTRACT_VERSION", "Mirror", "RedisSink", "RedisWriter", "redis_key"]

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
    redis.exceptions.ClusterDownError,  # a cluster without a primary for some slot, for now
    redis.exceptions.TryAgainError,  # a slot migrating
    redis.exceptions.SlotNotCoveredError,
)
_SCRIPTS = {"hset": _GUARDED_HSET, "xadd": _GUARDED_XADD}


class _ScriptsMissing(redis.ConnectionError):
    """A cluster node lost its script cache (restarted): scripts reloaded, batch retried."""


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


_MARKER_TTL_MS = 7 * 86_400_000  # an idle writer's marker expires: a harmless full rewrite
_RESTORE_CHUNK = 1_000  # commands per pipeline while restoring
_PRUNE_EVERY = 512  # batches between sweeps of expired hashes out of the mirror


class RedisWriter:
    """Writes batches of :data:`RedisWrite` with guards, retrying through outages, and
    rewrites what it wrote when Redis comes back without it (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        retry_timeout_s: float = 300.0,
        mirror: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.prefix = prefix
        # A random id, not a clock or a hash: two writers (workers, runs) never share one.
        self.marker = redis_key(prefix, "sink", uuid.uuid4().hex[:16])
        self.markers = [self.marker]  # on a cluster: one per primary, set on connecting
        self.mirror: Mirror | None = Mirror() if mirror else None
        self.restores = 0  # how many times Redis was found to have lost our writes
        self._acked = 0  # sequence number of the last batch known to be written
        self._restore_pending = False
        self._url = url
        self.cluster = is_cluster_url(url)
        # Built on the first write, inside the retry loop: a cluster client connects when
        # built (it reads the slot map), so a cluster still starting is waited for.
        self._conn: RedisClient | None = None
        self._scripts: dict[str, Any] = {}  # registered scripts (plain Redis only)
        self._shas = {n: hashlib.sha1(t.encode()).hexdigest() for n, t in _SCRIPTS.items()}
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
                lost = self._send(batch)
                self._acked += 1
                now = self._clock()
                if self.mirror is not None:
                    for w in batch:
                        self.mirror.record(redis_key(self.prefix, w.kind, w.entity), w, now)
                    if self._acked % _PRUNE_EVERY == 0:
                        self.mirror.prune(now)
                # A restore cut short by another outage is redone on the retry (the marker
                # written by this batch would no longer show the loss).
                self._restore_pending = self._restore_pending or lost
                if self._restore_pending:
                    self._restore()
                    self._restore_pending = False
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

    @property
    def _client(self) -> RedisClient:
        if self._conn is None:
            self._conn = connect(
                self._url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
            )
            if isinstance(self._conn, redis.cluster.RedisCluster):
                self.markers = node_markers(self._conn, self.marker)
                self._load_scripts()
            else:
                self._scripts = {n: self._conn.register_script(t) for n, t in _SCRIPTS.items()}
        return self._conn

    def _load_scripts(self) -> None:
        for text in _SCRIPTS.values():
            self._client.script_load(text)  # on every primary (redis-py routes it so)

    def _script(self, pipe: Any, name: str, key: str, args: Sequence[Any]) -> None:
        if self.cluster:
            # A cluster pipeline cannot load scripts itself: EVALSHA of scripts loaded on
            # every primary at connect, reloaded when a node answers NOSCRIPT (see _send).
            pipe.execute_command("EVALSHA", self._shas[name], 1, key, *args)
        else:
            self._scripts[name](keys=[key], args=args, client=pipe)

    def _send(self, batch: Sequence[RedisWrite]) -> bool:
        """One pipeline: read the marker, the writes, advance the marker. True if the
        marker shows that Redis lost earlier writes (checked before this batch landed)."""
        pipe = self._client.pipeline(transaction=False)
        for marker in self.markers:
            pipe.hget(marker, "seq")
        for w in batch:
            key = redis_key(self.prefix, w.kind, w.entity)
            if isinstance(w, HashWrite):
                message = json.dumps({"key": key, **w.fields}) if w.channel else ""
                args = [w.version, w.ttl_ms, self._channel(w.channel), message, *pairs(w.fields)]
                self._script(pipe, "hset", key, args)
            elif isinstance(w, StreamAdd):
                message = (
                    json.dumps({"key": key, "id": f"{w.ms}-{w.seq}", **w.fields})
                    if w.channel
                    else ""
                )
                args = [w.ms, w.seq, w.maxlen, self._channel(w.channel), message]
                self._script(pipe, "xadd", key, [*args, *pairs(w.fields)])
            elif isinstance(w, ZSetWrite):
                if w.score is None:
                    pipe.zrem(key, w.member)
                else:
                    pipe.zadd(key, {w.member: w.score})
        for marker in self.markers:
            pipe.hset(marker, "seq", self._acked + 1)
            pipe.pexpire(marker, _MARKER_TTL_MS)
        replies = pipe.execute(raise_on_error=not self.cluster)
        # Behind by one is fine: a batch whose reply was lost, now retried.
        seen = replies[: len(self.markers)]
        lost = self._acked > 0 and any(
            not isinstance(v, bytes) or int(v) < self._acked for v in seen
        )
        errors = [r for r in replies if isinstance(r, Exception)]
        if any(isinstance(e, redis.exceptions.NoScriptError) for e in errors):
            # A node restarted: it lost its scripts, and (without persistence) its data,
            # which the marker read before this batch shows. The markers were advanced
            # meanwhile, so remember the loss now; the batch is retried (idempotent).
            self._restore_pending = self._restore_pending or lost
            self._load_scripts()
            raise _ScriptsMissing("a Redis Cluster node lost its scripts (restarted?)")
        if errors:
            raise errors[0]
        return lost

    def _restore(self) -> None:
        """Redis lost writes: rewrite everything in the mirror (no notifications)."""
        self.restores += 1
        if self.mirror is None:
            raise DeliveryError(
                f"Redis lost this writer's data (marker {self.marker} missing or behind: a "
                "restart without persistence?) and the sink keeps no mirror; rebuild the "
                "state by a replay (docs/operations.md)"
            )
        m, now = self.mirror, self._clock()
        log.warning(
            "Redis lost writes (marker %s missing or behind): rewriting %d keys",
            self.marker,
            len(m),
        )
        if self.cluster:  # the node that lost our keys restarted: its scripts are gone too
            self._load_scripts()
        pipe, n = self._client.pipeline(transaction=False), 0
        for key, h in m.hashes.items():
            ttl = max(0, left_ms(h, now)) if h.ttl_ms else 0
            if h.ttl_ms and ttl == 0:
                continue  # expired meanwhile: Redis would not have it either
            self._script(pipe, "hset", key, [h.version, ttl, "", "", *pairs(h.fields)])
            n += 1
            if n % _RESTORE_CHUNK == 0:
                pipe.execute()
        for key, members in m.zsets.items():
            if members:
                pipe.zadd(key, members)
        for key, entries in m.streams.items():
            # Stream ids only grow: entries of the current batch already sit at the tail,
            # so the stream is rebuilt whole, in order.
            pipe.delete(key)
            for ms, seq, flat in entries:
                pipe.xadd(key, dict(zip(flat[::2], flat[1::2], strict=True)), id=f"{ms}-{seq}")
        for marker in self.markers:
            pipe.hset(marker, "seq", self._acked)
        pipe.execute()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class _RedisSinkPartition(StatelessSinkPartition[RedisWrite]):
    def __init__(self, writer: RedisWriter) -> None:
        self._writer = writer

    def write_batch(self, items: list[RedisWrite]) -> None:
        self._writer.write(items)

    def close(self) -> None:
        self._writer.close()


class RedisSink(DynamicSink[RedisWrite]):
    """Bytewax sink: one :class:`RedisWriter` (one connection) per worker."""

    def __init__(
        self, url: str, *, prefix: str, retry_timeout_s: float = 300.0, mirror: bool = True
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._retry_timeout_s = retry_timeout_s
        self._mirror = mirror

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisSinkPartition:
        writer = RedisWriter(
            self._url,
            prefix=self._prefix,
            retry_timeout_s=self._retry_timeout_s,
            mirror=self._mirror,
        )
        return _RedisSinkPartition(writer)
