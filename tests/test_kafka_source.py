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

from streams.kafka_source import kafka_part, part_key

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


def test_keys_translate_back_to_kafka_sources_own():
    assert kafka_part(part_key("rp.orders", 12)) == "12-rp.orders"
    assert sorted([part_key("t", 10), part_key("t", 9)]) == ["t/00009", "t/00010"]
