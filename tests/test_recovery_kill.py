"""kill -9 at random points, resume from the recovery store, and end where an uninterrupted
run ends: the same Redis state (counts, aggregates, forecasts, scores, alerts) and every
poison record in the dead-letter topic exactly once.

One simulated history (plus poison records) is produced once for the module; the baseline
runs it without recovery under one key prefix; each seeded case runs `retailpulse run` as a
subprocess with a recovery dir, SIGKILLs it (the first kill before any snapshot exists),
restarts it, and finally lets it finish, under its own key prefix and dead-letter topic.
Budget: ~60-90 s on 2 cores for the whole file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.kafka_io import ConfirmingProducer, create_topics, dead_letter_id, producer_config
from streams.produce import EventProducer
from streams.runner import run
from streams.settings import Settings, load_settings
from streams.simulator import SimulationConfig, Simulator
from tests.helpers import order, redis_state

pytestmark = pytest.mark.integration

SNAPSHOT_S = 0.2
KILLS = 3  # per seed; the first lands before the first snapshot


@dataclasses.dataclass(frozen=True)
class World:
    settings: Settings  # input topics of this module; baseline prefix and DLQ
    poison: frozenset[tuple[str, int, int]]  # (topic, partition, offset) of each bad record
    events: int


def _settings(kafka: str, redis_url: str, topics: str, prefix: str, dlq: str) -> Settings:
    return load_settings(
        env={},
        overrides={
            "kafka": {"bootstrap_servers": kafka},
            "redis": {"url": redis_url, "key_prefix": prefix, "retry_timeout_s": 20},
            "topics": {"prefix": f"{topics}.", "dead_letter": dlq, "partitions": 2},
            "run": {"epoch_interval_s": SNAPSHOT_S, "batch_size": 50},
        },
        use_embedded=False,
    )


def _poison_values() -> list[bytes | None]:
    from streams.registry import ManifestResolver, SchemaCatalog
    from streams.serde import AvroSerializer

    enc = AvroSerializer(ManifestResolver(SchemaCatalog.load()), "orders")
    good = enc(order())
    line = order()["lines"][0]
    return [
        bytes(range(7, 47)),  # random bytes
        b"\x01" + good[1:],  # wrong magic
        good[:-6],  # truncated
        None,  # tombstone
        enc(order(lines=[{**line, "unit_price": math.nan}])),  # NaN price
        enc(order(lines=[{**line, "quantity": -5}])),  # negative quantity
    ]


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, redis_url: str) -> Iterator[World]:
    run_id = uuid.uuid4().hex[:6]
    s = _settings(kafka_bootstrap, redis_url, f"kill{run_id}", f"rpkill{run_id}A",
                  f"kill{run_id}.dlqA")  # fmt: skip
    create_topics(s.kafka, s.topics)
    sim = Simulator(
        SimulationConfig(
            seed=11, start_date=date(2024, 9, 1), days=75, skus=12, stores=2, customers=60
        )
    )
    producer = EventProducer(s)
    bad = ConfirmingProducer(producer_config(s.kafka))
    poison_values = _poison_values()
    orders_topic = s.topics.input_topic("orders")
    n_poison = 0
    for i, (_, events) in enumerate(sim.days()):
        producer.send_all(events)  # confirmed: the poison lands after the day's events
        keys = [e.key for e in events if e.family == "orders"]
        if i % 2 == 1 and keys:  # spread over the history, on the partitions orders use
            value = poison_values[n_poison % len(poison_values)]
            key = None if keys[-1] is None else str(keys[-1]).encode()
            bad.produce(orders_topic, value, key=key, headers=[("poison", b"1")])
            bad.flush_or_raise()
            n_poison += 1
    total = sum(producer.counts.values())
    poison = frozenset(
        (orders_topic, m.partition(), m.offset())
        for m in _read_all(s, orders_topic)
        if dict(m.headers() or []).get("poison")
    )
    assert len(poison) == n_poison > 20
    yield World(s, poison, total)


def _read_all(s: Settings, topic: str) -> list[Any]:
    """Every message of ``topic`` by assignment (no group join), to the end."""
    consumer = Consumer({**s.kafka.client_config(), "group.id": "t", "enable.partition.eof": True,
                         "enable.auto.commit": False})  # fmt: skip
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(meta.partitions)
        ends = {}
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[Any] = []
        deadline = time.monotonic() + 30
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        ends.pop(msg.partition(), None)
                    continue
                out.append(msg)
                if msg.offset() >= ends.get(msg.partition(), 0) - 1:
                    ends.pop(msg.partition(), None)
        assert not ends, f"could not read {topic} to its end"
        return out
    finally:
        consumer.close()


# Kinds whose values depend on the order in which partitions/topics arrive: only their key
# set is compared. Empty since the model flows sequence their input by event time
# (processors/sequencer.py, docs/event-time.md): every kind is compared value for value.
# Add a kind back only with its cause in docs/recovery.md "Known limits".
ORDER_DEPENDENT: frozenset[str] = frozenset()


def _kind(key: str) -> str:
    return key.split(":")[2]  # ":v1:<kind>:<entity>"


def order_dependent(key: str) -> bool:
    return _kind(key) in ORDER_DEPENDENT


def _commits(db: Path) -> int:
    """How many epochs the store has committed (0: no snapshot yet, or no store)."""
    total = 0
    for part in db.glob("part-*.sqlite3"):
        try:
            con = sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=0.2)
            try:
                row = con.execute("SELECT COALESCE(MAX(commit_epoch), 0) FROM commits")
                total += row.fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:
            pass
    return total


def _spawn(s: Settings, db: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RETAILPULSE_KAFKA_BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
        "RETAILPULSE_REDIS_URL": s.redis.url,
        "RETAILPULSE_REDIS_KEY_PREFIX": s.redis.key_prefix,
        "RETAILPULSE_REDIS_RETRY_TIMEOUT_S": "20",
        "RETAILPULSE_TOPICS_PREFIX": s.topics.prefix,
        "RETAILPULSE_TOPICS_DEAD_LETTER": s.topics.dead_letter,
        "RETAILPULSE_RUN_BATCH_SIZE": str(s.run.batch_size),
    }
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "--log-level", "WARNING", "run",
             "--recovery-dir", str(db), "--snapshot-interval", str(SNAPSHOT_S)],
            env=env, stdout=fh, stderr=fh,
        )  # fmt: skip


@pytest.fixture(scope="module")
def baseline(world: World, redis_url: str) -> dict[str, Any]:
    run(world.settings, live=False)  # uninterrupted, no recovery
    client = redis.Redis.from_url(redis_url)
    try:
        return redis_state(client, world.settings.redis.key_prefix)
    finally:
        client.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(
    world: World, baseline: dict[str, Any], redis_url: str, tmp_path: Path, seed: int
):
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:6]
    s = dataclasses.replace(
        world.settings,
        redis=dataclasses.replace(world.settings.redis, key_prefix=f"rpkill{tag}B"),
        topics=dataclasses.replace(world.settings.topics, dead_letter=f"kill{tag}.dlqB"),
    )
    db, log = tmp_path / "recovery", tmp_path / "run.log"
    kills = 0
    for attempt in range(KILLS):
        before = _commits(db)
        proc = _spawn(s, db, log)
        try:
            if attempt == 0:  # before the first snapshot: still importing
                time.sleep(rng.uniform(0.1, 1.0))
                assert _commits(db) == 0
            else:  # mid-run: after 1-2 more snapshots, at a random moment within an epoch
                target = before + rng.randint(1, 2)
                deadline = time.monotonic() + 90
                while _commits(db) < target and proc.poll() is None:
                    assert time.monotonic() < deadline, log.read_text()[-3000:]
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, SNAPSHOT_S * 1.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    proc = _spawn(s, db, log)
    assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert kills >= 2, "the flow finished before it could be killed: make the history longer"

    client = redis.Redis.from_url(redis_url)
    try:
        resumed = redis_state(client, s.redis.key_prefix)
    finally:
        client.close()
    base, got = baseline, resumed  # redis_state leaves the sink's markers out
    extra = sorted(got.keys() - base.keys())
    lost = sorted(base.keys() - got.keys())
    assert (extra, lost) == ([], []), "extra or lost entities"
    differ = sorted(k for k in base.keys() & got.keys()
                    if base[k] != got[k] and not order_dependent(k))  # fmt: skip
    assert differ == [], f"{len(differ)} keys differ, e.g. {differ[:5]}"
    counted = sum(int(v[b"events"]) for k, v in resumed.items() if _kind(k) == "ingest")
    assert counted == world.events  # nothing lost, nothing counted twice

    for dlq in (world.settings.topics.dead_letter, s.topics.dead_letter):
        ids = Counter(dead_letter_id(m.headers()) for m in _read_all(s, dlq))
        assert set(ids) == world.poison, dlq
        assert set(ids.values()) == {1}, f"{dlq}: a dead letter written twice: {ids}"
