"""The Redis sink against a real server: guarded versions, collapse, TTL, retry, failure."""

from __future__ import annotations

import json

import pytest
import redis

from infra.redis_sink import RedisWriter, redis_key
from processors.writes import HashWrite, StreamAdd, ZSetWrite
from streams.errors import DeliveryError

pytestmark = pytest.mark.integration


@pytest.fixture
def writer(redis_url: str, key_prefix: str):
    w = RedisWriter(redis_url, prefix=key_prefix)
    yield w
    w.close()


@pytest.fixture
def client(redis_url: str):
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


def test_older_versions_never_overwrite_newer(writer, client, key_prefix):
    key = redis_key(key_prefix, "ingest", "orders")
    writer.write([HashWrite("ingest", "orders", {"events": 10}, version=10)])
    writer.write([HashWrite("ingest", "orders", {"events": 7}, version=7)])  # a replay
    assert client.hgetall(key) == {"events": "10", "_version": "10"}
    writer.write([HashWrite("ingest", "orders", {"events": 10}, version=10)])  # same again
    writer.write([HashWrite("ingest", "orders", {"events": 12}, version=12)])
    assert client.hget(key, "events") == "12"


def test_a_batch_is_collapsed_to_the_newest_write_per_key(writer, client, key_prefix):
    batch = [HashWrite("ingest", "orders", {"events": v}, version=v) for v in (3, 9, 5)]
    batch.append(HashWrite("ingest", "stores", {"events": 1}, version=1))
    assert writer.write(batch) == 2
    assert client.hget(redis_key(key_prefix, "ingest", "orders"), "events") == "9"


def test_ttl_is_applied(writer, client, key_prefix):
    writer.write([HashWrite("cust", "c1", {"x": 1}, version=1, ttl_ms=60_000)])
    assert 0 < client.pttl(redis_key(key_prefix, "cust", "c1")) <= 60_000


def test_unreachable_redis_is_retried_then_fails_loudly():
    now = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    w = RedisWriter(
        "redis://127.0.0.1:9/0", prefix="x", retry_timeout_s=10, clock=lambda: now[0], sleep=sleep
    )
    with pytest.raises(DeliveryError, match="did not accept"):
        w.write([HashWrite("ingest", "orders", {"events": 1}, version=1)])
    assert len(sleeps) > 3 and sleeps == sorted(sleeps)  # exponential backoff
    assert max(sleeps) <= 5.0


def test_hash_notifies_only_on_a_newer_version(writer, client, key_prefix):
    pubsub = client.pubsub()
    channel = f"{key_prefix}:v1:forecast-changes"
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1)  # subscription confirmation
    write = HashWrite("fc", "s1", {"p50": 3.5}, version=5, channel="forecast-changes")
    writer.write([write])
    writer.write([write])  # a replay: no second notification
    writer.write([HashWrite("fc", "s1", {"p50": 1.0}, version=4, channel="forecast-changes")])
    messages = []
    while (m := pubsub.get_message(timeout=0.5)) is not None:
        messages.append(m)
    pubsub.close()
    assert [json.loads(m["data"])["p50"] for m in messages] == [3.5]


def test_stream_entries_are_added_once_with_event_time_ids(writer, client, key_prefix):
    key = redis_key(key_prefix, "alerts", "all")
    adds = [
        StreamAdd("alerts", "all", {"alert": "a1"}, ms=1000, seq=0),
        StreamAdd("alerts", "all", {"alert": "a2"}, ms=1000, seq=1),
        StreamAdd("alerts", "all", {"alert": "a3"}, ms=2000),
    ]
    writer.write(adds)
    writer.write(adds)  # replayed epoch
    writer.write([StreamAdd("alerts", "all", {"alert": "old"}, ms=500)])
    entries = client.xrange(key)
    assert [e[0] for e in entries] == ["1000-0", "1000-1", "2000-0"]


def test_sorted_set_scores_are_absolute(writer, client, key_prefix):
    key = redis_key(key_prefix, "risk", "top")
    writer.write([ZSetWrite("risk", "top", "c1", 0.5), ZSetWrite("risk", "top", "c2", 0.9)])
    writer.write([ZSetWrite("risk", "top", "c1", 0.7), ZSetWrite("risk", "top", "c2", None)])
    assert client.zrange(key, 0, -1, withscores=True) == [("c1", 0.7)]
