"""Prototype: the Redis sink's commands packed as raw RESP bytes, vs redis-py's pipeline.

    python -m benchmarks.e2e_resp [DAYS]

bench_e2e found Redis command building to be one of the largest costs of a bounded run
(redis-py's ``Encoder.encode`` and ``pack_command`` run per argument, ~10 per write, with
several isinstance checks each, and its reply parser runs per command). This module packs
the very same commands as :class:`infra.redis_sink.RedisWriter` (same scripts, keys,
arguments and order) straight into protocol bytes, sends a batch with one ``sendall`` and
counts the single-line replies (every command it sends answers with an integer, or a
one-line error). It is a measured proposal for infra/redis_sink.py (owner: helper D), not
used by the flows.

The benchmark replays DAYS simulated days through the flows' steps in-process (no Kafka),
keeps their Redis writes in batches of 1000 input events, then writes every batch twice,
with ``RedisWriter`` and with :class:`RespWriter`, under two key prefixes, reports client
CPU per command, and checks that both left identical keys and values.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

import redis

from infra.redis_sink import _GUARDED_HSET, _GUARDED_XADD, _collapse, channel_name, redis_key
from processors.writes import HashWrite, RedisWrite, StreamAdd, ZSetWrite
from tests.helpers import redis_state

__all__ = ["RespWriter", "pack"]


def _enc(value: Any) -> bytes:
    """redis-py's Encoder.encode rules (utf-8; int/float via repr; bool refused)."""
    cls = value.__class__
    if cls is str:
        return value.encode()
    if cls is int or cls is float:
        return repr(value).encode()
    if cls is bytes:
        return value
    if isinstance(value, bool):
        raise TypeError("bool is not a Redis value")
    if isinstance(value, (int, float)):
        return repr(value).encode()
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"cannot send a {cls.__name__} to Redis")


def _command(out: list[bytes], args: Sequence[bytes]) -> None:
    out.append(b"*%d\r\n" % len(args))
    out += [b"$%d\r\n%b\r\n" % (len(a), a) for a in args]


def pack(
    batch: Sequence[RedisWrite], prefix: str, hset_sha: bytes, xadd_sha: bytes
) -> tuple[bytes, int]:
    """RESP bytes for ``batch`` (already collapsed) and the number of commands in them."""
    out: list[bytes] = []
    n = 0
    for w in batch:
        key = redis_key(prefix, w.kind, w.entity)
        if isinstance(w, HashWrite):
            channel = channel_name(prefix, w.channel) if w.channel else ""
            message = json.dumps({"key": key, **w.fields}) if w.channel else ""
            args = [b"EVALSHA", hset_sha, b"1", key.encode(), b"%d" % w.version,
                    b"%d" % w.ttl_ms, channel.encode(), message.encode()]  # fmt: skip
            for field, value in w.fields.items():
                args.append(field.encode())
                args.append(_enc(value))
        elif isinstance(w, StreamAdd):
            channel = channel_name(prefix, w.channel) if w.channel else ""
            message = (
                json.dumps({"key": key, "id": f"{w.ms}-{w.seq}", **w.fields}) if w.channel else ""
            )
            args = [b"EVALSHA", xadd_sha, b"1", key.encode(), b"%d" % w.ms, b"%d" % w.seq,
                    b"%d" % w.maxlen, channel.encode(), message.encode()]  # fmt: skip
            for field, value in w.fields.items():
                args.append(field.encode())
                args.append(_enc(value))
        elif isinstance(w, ZSetWrite):
            if w.score is None:
                args = [b"ZREM", key.encode(), w.member.encode()]
            else:
                args = [b"ZADD", key.encode(), _enc(w.score), w.member.encode()]
        else:
            continue
        _command(out, args)
        n += 1
    return b"".join(out), n


class RespWriter:
    """Sends packed batches on one plain socket; replies are counted, errors raised."""

    def __init__(self, url: str, *, prefix: str) -> None:
        self.prefix = prefix
        client = redis.Redis.from_url(url)
        self._hset = client.script_load(_GUARDED_HSET).encode()
        self._xadd = client.script_load(_GUARDED_XADD).encode()
        kwargs = client.connection_pool.connection_kwargs
        client.close()
        self._sock = socket.create_connection((kwargs["host"], kwargs["port"]), timeout=10)
        self._buf = b""

    def write(self, writes: Sequence[RedisWrite]) -> int:
        payload, n = pack(_collapse(writes), self.prefix, self._hset, self._xadd)
        if not n:
            return 0
        self._sock.sendall(payload)
        replies = self._read_lines(n)
        errors = [r for r in replies if r.startswith(b"-")]
        if errors:
            raise RuntimeError(f"Redis refused {len(errors)} commands: {errors[0]!r}")
        return n

    def _read_lines(self, n: int) -> list[bytes]:
        buf = self._buf
        while buf.count(b"\r\n") < n:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            buf += chunk
        lines = buf.split(b"\r\n", n)
        self._buf = lines[n] if len(lines) > n else b""
        return lines[:n]

    def close(self) -> None:
        self._sock.close()


def _batches(days: int) -> list[list[RedisWrite]]:
    """The flows' Redis writes for ``days`` simulated days, per batch of 1000 events."""
    from datetime import date

    from bytewax.connectors.kafka import KafkaSourceMessage

    from benchmarks.e2e_plain import FlowSteps
    from streams.registry import ManifestResolver, SchemaCatalog
    from streams.serde import AvroSerializer
    from streams.settings import Settings
    from streams.simulator import SimulationConfig, Simulator

    settings = Settings()
    resolver = ManifestResolver(SchemaCatalog.load())
    topics = settings.topics.input_topics()
    encoders = {f: AvroSerializer(resolver, f) for f in topics}
    steps = FlowSteps(settings, resolver)
    sim = Simulator(SimulationConfig(seed=11, start_date=date(2024, 11, 1), days=days))
    batches: list[list[RedisWrite]] = []
    offsets: dict[str, int] = {}
    pending: list[Any] = []
    for ev in sim.events():
        topic = topics[ev.family]
        offsets[topic] = offsets.get(topic, -1) + 1
        pending.append(
            KafkaSourceMessage(
                key=ev.key.encode(),
                value=encoders[ev.family](ev.value),
                topic=topic,
                partition=0,
                offset=offsets[topic],
                timestamp=(1, ev.event_time),
            )
        )
        if len(pending) == 1000:
            batches.append(steps.process(pending)[0])
            pending = []
    if pending:
        batches.append(steps.process(pending)[0])
    batches.append(steps.eof()[0])
    return batches


def main(days: int = 20) -> None:
    from benchmarks.common import write_result
    from infra.embedded import EmbeddedRedis
    from infra.redis_sink import RedisWriter

    batches = _batches(days)
    n_cmds = sum(len(_collapse(b)) for b in batches)
    with EmbeddedRedis() as server:
        url = server.info.address
        figures: dict[str, Any] = {"days": days, "batches": len(batches), "commands": n_cmds}
        for name, writer in (
            ("redis_py", RedisWriter(url, prefix="a")),
            ("raw_resp", RespWriter(url, prefix="b")),
        ):
            t_wall, t_cpu = time.perf_counter(), time.process_time()
            for batch in batches:
                writer.write(batch)
            cpu = time.process_time() - t_cpu
            figures[f"{name}_us_cpu_per_command"] = round(cpu / n_cmds * 1e6, 2)
            figures[f"{name}_wall_s"] = round(time.perf_counter() - t_wall, 2)
            writer.close()
        client = redis.Redis.from_url(url)
        a, b = redis_state(client, "a"), redis_state(client, "b")
        figures["keys"] = len(a)
        figures["identical_redis_state"] = a == b
        differing = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        figures["keys_differing"] = differing[:5]
        client.close()
    write_result("e2e_resp", figures)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
