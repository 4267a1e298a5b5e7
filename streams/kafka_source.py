"""Kafka input: partitions keyed so every topic spreads over the workers, and one consumer
per worker for all the partitions it reads.

**Keys.** Bytewax 0.21 gives each input partition to a worker in the order of the partition
keys (``calc_primaries``, src/timely.rs: keys sorted as strings, each to the worker with the
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

**One consumer per worker.** KafkaSource opens a librdkafka consumer per partition: with
6 topics x 6 partitions, 36 consumers, each with its own threads, broker connection and
fetch loop. Every live fetch that finds data returns at once, so the broker answered ~36
fetch requests for every one a single consumer needs: against the embedded Tansu broker at
1,600 events/s that alone took more than a core and pushed the producers' acks to seconds
(benchmarks/results/e2e_live_*.json, docs/benchmarks.md). Here all the partitions a
worker thread builds share one consumer (:class:`_Hub`); each partition keeps its own
offset (its recovery state: the offset after the last message it *emitted*, so what sits
in its buffer at a snapshot is read again on resume) and its own end-of-partition state.

>>> part_key("retailpulse.orders", 3)
'retailpulse.orders/00003'
>>> split_key("retailpulse.orders/00003")
('retailpulse.orders', 3)
>>> sorted(part_key(t, p) for p in range(2) for t in ("b.x", "a.y"))
['a.y/00000', 'a.y/00001', 'b.x/00000', 'b.x/00001']
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka import KafkaError as ConfluentKafkaError
from confluent_kafka.admin import AdminClient

__all__ = ["BalancedKafkaSource", "part_key", "split_key"]

Item = KafkaSourceMessage[bytes | None, bytes | None] | KafkaError[bytes | None, bytes | None]
_EOF = ConfluentKafkaError._PARTITION_EOF


def part_key(topic: str, partition: int) -> str:
    """Our key of one Kafka partition (zero-padded: "10" must sort after "9")."""
    return f"{topic}/{partition:05d}"


def split_key(key: str) -> tuple[str, int]:
    """The topic and partition a :func:`part_key` names."""
    topic, _, partition = key.rpartition("/")
    return topic, int(partition)


class BalancedKafkaSource(FixedPartitionedSource[Item, int | None]):
    """Kafka input keyed topic first, one consumer per worker (module docstring).

    Same arguments and items as Bytewax's ``KafkaSource`` (``KafkaSourceMessage``, or
    ``KafkaError`` as data when ``raise_on_errors`` is false); ``tail=False`` ends each
    partition at the end it finds.
    """

    def __init__(
        self,
        brokers: list[str],
        topics: list[str],
        *,
        tail: bool = True,
        starting_offset: int = 0,
        add_config: dict[str, str] | None = None,
        batch_size: int = 1000,
        raise_on_errors: bool = True,
    ) -> None:
        self._brokers = list(brokers)
        self._topics = list(topics)
        self._tail = tail
        self._starting_offset = starting_offset
        self._add_config = dict(add_config or {})
        self._batch_size = batch_size
        self._raise_on_errors = raise_on_errors
        self._hubs: dict[int, _Hub] = {}  # worker thread id -> its consumer
        self._hubs_lock = threading.Lock()

    def list_parts(self) -> list[str]:
        admin = AdminClient({"bootstrap.servers": ",".join(self._brokers), **self._add_config})
        keys: list[str] = []
        for topic in self._topics:
            # One topic at a time, as KafkaSource does: a broker that auto-creates topics
            # creates exactly the ones asked for.
            meta = admin.list_topics(topic).topics[topic]
            if meta.error is not None:
                raise RuntimeError(f"cannot list the partitions of {topic!r}: {meta.error.str()}")
            keys.extend(part_key(topic, p) for p in meta.partitions)
        return keys

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        topic, partition = split_key(for_part)
        if topic not in self._topics:
            raise ValueError(
                f"input partition {for_part!r} is not in the configured topics "
                f"{sorted(self._topics)}: the recovery store belongs to another topic set"
            )
        offset = self._starting_offset if resume_state is None else resume_state
        me = threading.get_ident()
        with self._hubs_lock:
            hub = self._hubs.get(me)
            if hub is None or hub.holds(topic, partition):
                # Holding it already means a previous run on this thread ended without
                # closing its partitions (an exception): start over with a new consumer.
                if hub is not None:
                    hub.close()
                hub = self._hubs[me] = _Hub(self._consumer_config(), self._batch_size)
        return hub.add(topic, partition, offset, self._raise_on_errors)

    def _consumer_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            # Offsets live in the recovery store (or start at starting_offset), as in
            # KafkaSource: no consumer group, nothing committed.
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": "false",
            "bootstrap.servers": ",".join(self._brokers),
            "enable.partition.eof": str(not self._tail),
        }
        config.update(self._add_config)
        return config


class _Hub:
    """One consumer for the partitions of one worker thread; a message waits in the buffer
    of its partition until that partition's ``next_batch``.

    Bytewax asks every partition for a batch in turn. The first one to find its buffer
    empty since the last fetch fetches for all (up to ``batch_size`` messages per
    partition, as many as KafkaSource's consumers would return in a round together: a
    backfill keeps its large batches); the others then only take what it left them, so a
    round costs one ``consume`` call, not one per partition. Buffers stay bounded: a
    partition holding more than ``4 x batch_size`` is paused in the consumer until its
    buffer is down to one batch (librdkafka then fetches it again from the position after
    the last message we took).
    """

    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.consumer = Consumer(config)
        self.batch_size = batch_size
        self.parts: dict[tuple[str, int], _Partition] = {}
        self.fetches = 0  # how many consume calls so far: one per round (class docstring)
        self.cap = 4 * batch_size  # per-partition buffer bound (class docstring)
        self.lock = threading.Lock()  # Bytewax calls a worker's partitions on its thread
        self.closed = False

    def holds(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self.parts

    def add(self, topic: str, partition: int, offset: int, raise_on_errors: bool) -> _Partition:
        part = _Partition(self, topic, partition, offset, raise_on_errors)
        with self.lock:
            self.parts[(topic, partition)] = part
            self.consumer.incremental_assign([TopicPartition(topic, partition, offset)])
        return part

    def fetch(self, caller: _Partition) -> None:
        """One ``consume`` call; each message to its partition's buffer."""
        self.fetches += 1
        for msg in self.consumer.consume(self.batch_size * max(1, len(self.parts)), 0.001):
            err = msg.error()
            part = self.parts.get((msg.topic(), msg.partition()))  # type: ignore[arg-type]
            if err is not None:
                if err.code() == _EOF and part is not None:
                    part.end()
                    continue
                # A consumer-wide error names no partition of ours: the caller reports it
                # (the decoder stops on a fatal one and logs the others).
                (part or caller).buffer.append(KafkaError(err, _message(msg)))
                continue
            if part is None or part.eof:
                # Not ours any more (closed), or past the end a bounded run stopped at:
                # its offset was never emitted, so it is read again on the next run.
                continue
            part.buffer.append(_message(msg))
            if len(part.buffer) > self.cap and not part.paused:
                part.paused = True
                self.consumer.pause([TopicPartition(part.topic, part.partition)])

    def remove(self, part: _Partition) -> None:
        with self.lock:
            key = (part.topic, part.partition)
            if self.parts.get(key) is not part or self.closed:
                return
            del self.parts[key]
            part.buffer.clear()
            if self.parts:
                self.consumer.incremental_unassign([TopicPartition(part.topic, part.partition)])
            else:
                self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.consumer.close()


class _Partition(StatefulSourcePartition[Item, int | None]):
    """One Kafka partition, read through its worker's shared consumer."""

    def __init__(
        self, hub: _Hub, topic: str, partition: int, offset: int, raise_on_errors: bool
    ) -> None:
        self.hub = hub
        self.topic = topic
        self.partition = partition
        self.offset = offset  # next offset to emit: the recovery state
        self.raise_on_errors = raise_on_errors
        self.buffer: deque[Item] = deque()
        self.eof = False  # the consumer reported the end (bounded runs only)
        self.paused = False  # buffer over the hub's cap: not fetched until drained
        self._seen = hub.fetches  # hub.fetches at this partition's last call

    def end(self) -> None:
        """The end of the partition: stop fetching it (bounded runs)."""
        self.eof = True
        self.hub.consumer.pause([TopicPartition(self.topic, self.partition)])

    def next_batch(self) -> list[Item]:
        hub = self.hub
        with hub.lock:
            if not self.buffer and self._seen == hub.fetches:
                hub.fetch(self)  # nobody fetched since my last call: my turn
            self._seen = hub.fetches
            if not self.buffer:
                if self.eof:
                    raise StopIteration
                return []
            n = min(len(self.buffer), hub.batch_size)
            batch = [self.buffer.popleft() for _ in range(n)]
            if self.paused and len(self.buffer) <= hub.batch_size and not self.eof:
                self.paused = False
                hub.consumer.resume([TopicPartition(self.topic, self.partition)])
        if self.raise_on_errors:
            for item in batch:
                if isinstance(item, KafkaError):
                    raise RuntimeError(f"error consuming from Kafka topic {self.topic!r}: "
                                       f"{item.err}")  # fmt: skip
        for item in reversed(batch):
            if isinstance(item, KafkaSourceMessage):
                self.offset = (item.offset or 0) + 1
                break
        return batch

    def snapshot(self) -> int | None:
        return self.offset

    def close(self) -> None:
        self.hub.remove(self)


def _message(msg: Message) -> KafkaSourceMessage[bytes | None, bytes | None]:
    return KafkaSourceMessage(
        key=msg.key(),
        value=msg.value(),
        topic=msg.topic(),
        headers=msg.headers() or [],  # type: ignore[arg-type]
        latency=msg.latency(),
        offset=msg.offset(),
        partition=msg.partition(),
        timestamp=msg.timestamp(),
    )
