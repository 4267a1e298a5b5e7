"""Bytewax's KafkaSource with partition keys that spread every topic over the workers.

Bytewax 0.21 gives each input partition to a worker in the order of the partition keys
(``calc_primaries``, src/timely.rs: keys sorted as strings, each to the worker with the
fewest so far, i.e. position ``p`` to worker ``p % workers`` when every worker lists every
partition). KafkaSource names them ``"<partition>-<topic>"``, so the order is partition
first: with our six topics and two workers, position ``p`` of each partition's six topics
always goes to the same worker, and a whole topic (clickstream, over half the events)
landed on one worker (measured: one process decoded 90 % of the events,
benchmarks/results/e2e.json). Keyed ``"<topic>/<partition>"`` (Kafka topic names cannot
hold ``/``) the order is topic first, so each topic's partitions alternate over the
workers: with ``topics.partitions`` a multiple of the process count, every worker reads
the same share of every topic.

The keys are the input step's recovery state keys: a recovery store written with the old
keys is refused by the manifest (``processors.shards.Shards.STATE_VERSION`` 2), never
resumed from offset 0.

>>> part_key("retailpulse.orders", 3)
'retailpulse.orders/00003'
>>> kafka_part("retailpulse.orders/00003")
'3-retailpulse.orders'
>>> sorted(part_key(t, p) for p in range(2) for t in ("b.x", "a.y"))
['a.y/00000', 'a.y/00001', 'b.x/00000', 'b.x/00001']
"""

from __future__ import annotations

from typing import Any

from bytewax.connectors.kafka import KafkaSource

__all__ = ["BalancedKafkaSource", "kafka_part", "part_key"]


def part_key(topic: str, partition: int) -> str:
    """Our key of one Kafka partition (zero-padded: "10" must sort after "9")."""
    return f"{topic}/{partition:05d}"


def kafka_part(key: str) -> str:
    """The key KafkaSource itself uses for the partition ``key`` names."""
    topic, _, partition = key.rpartition("/")
    return f"{int(partition)}-{topic}"


class BalancedKafkaSource(KafkaSource):
    """KafkaSource whose partitions are keyed topic first (see the module docstring)."""

    def list_parts(self) -> list[str]:
        keys = []
        for part in super().list_parts():
            partition, topic = part.split("-", 1)
            keys.append(part_key(topic, int(partition)))
        return keys

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> Any:
        return super().build_part(step_id, kafka_part(for_part), resume_state)
