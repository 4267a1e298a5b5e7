"""Input partitions spread over workers (streams/kafka_source.py), checked against where a
real multi-worker Bytewax run builds each partition."""

from __future__ import annotations

import threading
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink, cluster_main

from streams.kafka_source import part_key, split_key

TOPICS = [f"rp.{f}" for f in ("catalog", "clickstream", "inventory", "orders", "stores",
                               "supplier")]  # fmt: skip


class _Done(StatefulSourcePartition[Any, None]):
    def next_batch(self) -> list[Any]:
        raise StopIteration

    def snapshot(self) -> None:
        return None


class _Parts(FixedPartitionedSource[Any, None]):
    """Lists ``keys``; records which worker thread builds each."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.built: dict[str, str] = {}
        self._lock = threading.Lock()

    def list_parts(self) -> list[str]:
        return list(self.keys)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Done:
        with self._lock:
            self.built[for_part] = threading.current_thread().name
        return _Done()


def _per_topic(keys: list[str], topic_of: Any, workers: int) -> dict[str, list[int]]:
    """topic -> how many of its partitions each worker thread read."""
    source = _Parts(keys)
    flow = Dataflow("parts")
    op.output("out", op.input("in", flow, source), TestingSink([]))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert set(source.built) == set(keys)
    threads = sorted(set(source.built.values()))
    out: dict[str, list[int]] = {}
    for key, thread in source.built.items():
        counts = out.setdefault(topic_of(key), [0] * len(threads))
        counts[threads.index(thread)] += 1
    return out


@pytest.mark.parametrize("workers", [2, 3])
def test_every_topic_is_spread_evenly_over_the_workers(workers: int):
    keys = [part_key(t, p) for t in TOPICS for p in range(6)]
    got = _per_topic(keys, lambda k: k.rpartition("/")[0], workers)
    assert got == {t: [6 // workers] * workers for t in TOPICS}


def test_kafka_sources_own_keys_put_whole_topics_on_one_worker():
    # Why the source re-keys: "<partition>-<topic>" sorts partition first, and with six
    # topics on two workers every topic's partitions go to the same worker.
    keys = [f"{p}-{t}" for t in TOPICS for p in range(6)]
    got = _per_topic(keys, lambda k: k.split("-", 1)[1], 2)
    assert all(sorted(counts) == [0, 6] for counts in got.values())


def test_keys_translate_back_to_topic_and_partition():
    assert split_key(part_key("rp.orders", 12)) == ("rp.orders", 12)
    assert sorted([part_key("t", 10), part_key("t", 9)]) == ["t/00009", "t/00010"]


# -- one consumer per worker, against the real broker ----------------------------------------


class _CountingConsumer:
    """Wraps confluent_kafka.Consumer and counts how many the source opens."""

    made: list[Any] = []

    def __new__(cls, config: dict[str, Any]) -> Any:
        from confluent_kafka import Consumer

        consumer = Consumer(config)
        cls.made.append(consumer)
        return consumer


@pytest.fixture
def loaded_topics(kafka_bootstrap: str, unique_topics: Any) -> tuple[list[str], dict]:
    """Three topics of two partitions; partition (t, p) holds 3 * t + p + (p == 0) * 40
    messages (one partition empty: (0, 1) has 1, (1, 1) has 4...); value = "t:p:i"."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topics = [unique_topics(f"src{t}") for t in range(3)]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(t, 2, 1) for t in topics]).values():
        fut.result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    counts = {}
    for t, topic in enumerate(topics):
        for p in range(2):
            n = 3 * t + p + (40 if p == 0 else 0) - (1 if (t, p) == (0, 1) else 0)
            counts[(topic, p)] = n
            for i in range(n):
                producer.produce(topic, f"{t}:{p}:{i}".encode(), partition=p)
    assert producer.flush(30) == 0
    return topics, counts


def _source(kafka_bootstrap: str, topics: list[str], batch_size: int = 7) -> Any:
    from streams.kafka_source import BalancedKafkaSource

    return BalancedKafkaSource(
        brokers=[kafka_bootstrap], topics=topics, tail=False, starting_offset=0,
        batch_size=batch_size, raise_on_errors=False,
    )  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize("workers", [1, 2])
def test_each_worker_reads_all_its_partitions_through_one_consumer(
    kafka_bootstrap, loaded_topics, monkeypatch, workers
):
    import streams.kafka_source as ks

    topics, counts = loaded_topics
    _CountingConsumer.made = []
    monkeypatch.setattr(ks, "Consumer", _CountingConsumer)
    out: list[Any] = []
    flow = Dataflow("shared")
    op.output("out", op.input("in", flow, _source(kafka_bootstrap, topics)), TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert len(_CountingConsumer.made) == workers
    got: dict[tuple[str, int], list[int]] = {}
    for msg in out:
        got.setdefault((msg.topic, msg.partition), []).append(msg.offset)
    # Every message once, each partition in order (an empty partition simply ends).
    assert got == {k: list(range(n)) for k, n in counts.items() if n > 0}


@pytest.mark.integration
def test_a_partitions_state_is_the_offset_after_what_it_emitted(kafka_bootstrap, loaded_topics):
    topics, counts = loaded_topics
    source = _source(kafka_bootstrap, topics, batch_size=5)
    a = source.build_part("in", part_key(topics[0], 0), None)
    b = source.build_part("in", part_key(topics[1], 0), 10)  # resumed at offset 10
    try:
        first: list[Any] = []
        for _ in range(200):  # until a's first batch arrives (the first fetch can be empty)
            first = a.next_batch()
            if first:
                break
        assert [m.offset for m in first] == list(range(len(first)))
        assert 0 < len(first) <= 5
        assert a.snapshot() == len(first)
        # b's messages may already wait in its buffer; its state moves only as it emits.
        assert b.snapshot() == 10
        taken: list[int] = []
        while True:
            try:
                taken += [m.offset for m in b.next_batch()]
            except StopIteration:
                break
        assert taken == list(range(10, counts[(topics[1], 0)]))
        assert b.snapshot() == counts[(topics[1], 0)]
    finally:
        a.close()
        b.close()
    assert a.hub.closed  # the last partition to close closes the consumer


@pytest.mark.integration
def test_a_partition_nobody_drains_is_paused_and_loses_nothing(kafka_bootstrap, loaded_topics):
    # b's calls fetch for both; a is not asked for a while, so its buffer would grow
    # without bound: past 4 batches it is paused, and once drained it is read on from
    # where it stopped: every message once, in order.
    topics, counts = loaded_topics
    source = _source(kafka_bootstrap, topics, batch_size=2)
    a = source.build_part("in", part_key(topics[0], 0), None)
    b = source.build_part("in", part_key(topics[1], 0), None)
    biggest = 0
    try:
        for _ in range(10_000):
            try:
                b.next_batch()
            except StopIteration:
                break
            biggest = max(biggest, len(a.buffer))
        assert a.paused
        assert biggest <= a.hub.cap + 2 * 2  # the cap plus one fetch's worth
        got: list[int] = []
        for _ in range(10_000):
            try:
                got += [m.offset for m in a.next_batch()]
            except StopIteration:
                break
        assert got == list(range(counts[(topics[0], 0)]))
    finally:
        a.close()
        b.close()
