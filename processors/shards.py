"""Logical shards: a fixed number of keyed states per sharded step, placed evenly on workers.

Bytewax puts a keyed state on the worker ``siphash13(key) % workers`` (Rust's
``DefaultHasher`` over the key string, bytewax 0.21 ``stateful_batch``): a handful of keys
named by hand can land on one worker and leave the other idle (with two workers, four
keys all share one in 1 case of 8). So the keys of sharded steps are *chosen*: shard ``i``
of ``n`` gets the first name ``<step>.<i>``, ``<step>.<i>~1``, ``<step>.<i>~2``... whose
hash is ``i`` modulo ``n``. With ``w`` workers and ``w`` dividing ``n``, shard ``i`` then
runs on worker ``i % w``: every worker holds the same number of shards, whatever the
process count, and the keys never depend on it (docs/scaling.md).

Entities go to shards by crc32 (never Python's salted ``hash()``), so the same customer,
store or series lands in the same shard in every process and every run. The number of
shards is fixed for the life of a recovery store (``run.shards``; recorded in its manifest).

>>> s = Shards(4)
>>> [worker_of(k, 4) for k in s.keys("demand_publish")]
[0, 1, 2, 3]
>>> [worker_of(k, 2) for k in s.keys("demand_publish")]
[0, 1, 0, 1]
>>> s.key_of("supply_cover", "ST001") == s.keys("supply_cover")[s.shard_of("ST001")]
True
>>> worker_of(s.engine_key("customers", slot=1), 4)
1
"""

from __future__ import annotations

import zlib
from functools import lru_cache

__all__ = ["Shards", "siphash13", "worker_of"]

_M = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M


def _round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _M
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _M
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _M
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _M
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 (Rust's ``DefaultHasher::new()``: keys 0, 0), as a 64-bit int.

    >>> hex(siphash13(b""))
    '0xd1fba762150c532c'
    """
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573
    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
        v0 ^= m
    b = ((n & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= b
    v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, workers: int) -> int:
    """The worker Bytewax 0.21 places a state key on (``str`` hashes its bytes, then 0xFF;
    checked against a real multi-worker run in tests/test_shards.py)."""
    return siphash13(key.encode() + b"\xff") % workers


@lru_cache(maxsize=256)
def _placed(name: str, slot: int, n: int) -> str:
    key, salt = name, 0
    while worker_of(key, n) != slot % n:
        salt += 1
        key = f"{name}~{salt}"
    return key


class Shards:
    """``n`` logical shards per sharded step; see the module docstring."""

    # The key layout of sharded and engine states: bump when it changes, so a recovery
    # store written with the old keys is refused instead of silently starting afresh.
    # 2: engine slots demand 0, supply 1, customers 5 (were 0, 2, 1), and the Kafka input
    # partitions keyed "<topic>/<partition>" (streams/kafka_source.py).
    STATE_VERSION = 2

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"the number of shards must be >= 1, not {n}")
        self.n = n

    def __repr__(self) -> str:
        return f"Shards({self.n})"

    def keys(self, step: str) -> list[str]:
        """The state key of every shard of ``step``, shard ``i`` at index ``i``."""
        return [_placed(f"{step}.{i}", i, self.n) for i in range(self.n)]

    def shard_of(self, entity: str) -> int:
        return zlib.crc32(entity.encode()) % self.n

    def key_of(self, step: str, entity: str) -> str:
        """The state key of the shard ``entity`` belongs to."""
        return _placed(f"{step}.{self.shard_of(entity)}", self.shard_of(entity), self.n)

    def engine_key(self, name: str, slot: int) -> str:
        """The key of a one-key engine, placed like shard ``slot``: engines given different
        slots run on different workers (when there are as many), beside equal shares of
        every sharded step."""
        return _placed(name, slot, self.n)
