"""Kafka clients built from settings: a producer that confirms delivery, the dead-letter
sink, and topic administration.

Every client gets the same pass-through properties (SASL, TLS...) from
:class:`~streams.settings.KafkaSettings`. Bytewax's own KafkaSink registers no delivery
callback, so a failed write would be lost silently; ours waits for every message of a batch
to be acknowledged and raises :class:`~streams.errors.DeliveryError` otherwise, which stops
the flow before its input offsets move past the batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processors.records import DLQ_HEADER_PREFIX, DeadLetter
from streams.errors import DeliveryError, InfraError
from streams.settings import KafkaSettings, TopicSettings

__all__ = [
    "DLQ_DEDUP_WINDOW",
    "ConfirmingProducer",
    "DeadLetterSink",
    "create_topics",
    "dead_letter_id",
    "producer_config",
    "read_dead_letter_ids",
]

log = logging.getLogger(__name__)


def producer_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """Durable defaults (idempotent, acks=all); the user's pass-through settings win."""
    return {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        **extra,
        **kafka.client_config(),
    }


class ConfirmingProducer:
    """A producer whose :meth:`flush_or_raise` proves every message was acknowledged.

    Usage: ``p = ConfirmingProducer(producer_config(settings.kafka))``, then
    ``p.produce("topic", b"value", key=b"k")`` any number of times, then
    ``p.flush_or_raise()``, which raises :class:`DeliveryError` if any message failed.
    """

    def __init__(self, config: Mapping[str, Any], *, flush_timeout_s: float = 30.0) -> None:
        self._producer = Producer(dict(config))
        self._flush_timeout_s = flush_timeout_s
        self._failures: list[str] = []
        self.delivered = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            self._failures.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] | None = None,
        timestamp_ms: int = 0,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers) if headers else None,
                    timestamp=timestamp_ms,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:  # local queue full: serve callbacks to make room
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise DeliveryError(f"cannot produce to {topic}: {exc}") from exc
        self._producer.poll(0)

    def flush_or_raise(self) -> None:
        remaining = self._producer.flush(self._flush_timeout_s)
        failures, self._failures = self._failures, []
        if remaining:
            raise DeliveryError(
                f"{remaining} messages not acknowledged by Kafka within "
                f"{self._flush_timeout_s:.0f} s"
            )
        if failures:
            raise DeliveryError(
                f"Kafka rejected {len(failures)} messages: " + "; ".join(failures[:5])
            )


DLQ_DEDUP_WINDOW = 10_000  # dead letters per DLQ partition read back at start-up

DeadLetterId = tuple[str, int, int]  # source topic, partition, offset


def dead_letter_id(headers: Any) -> DeadLetterId | None:
    """The source record a dead letter stands for, from its ``rp.dlq.*`` headers.

    >>> dead_letter_id([("rp.dlq.topic", b"t"), ("rp.dlq.partition", b"2"),
    ...                 ("rp.dlq.offset", b"41")])
    ('t', 2, 41)
    >>> dead_letter_id([("other", b"x")]) is None
    True
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    found = {
        k: v if isinstance(v, bytes) else str(v).encode()
        for k, v in pairs
        if k.startswith(DLQ_HEADER_PREFIX) and v is not None
    }
    try:
        return (
            found[DLQ_HEADER_PREFIX + "topic"].decode(),
            int(found[DLQ_HEADER_PREFIX + "partition"]),
            int(found[DLQ_HEADER_PREFIX + "offset"]),
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None  # not ours (or damaged): never matches, so never suppresses anything


def read_dead_letter_ids(
    kafka: KafkaSettings, topic: str, *, window: int = DLQ_DEDUP_WINDOW, timeout_s: float = 30.0
) -> set[DeadLetterId]:
    """Ids of the dead letters among the last ``window`` messages of each DLQ partition.

    Reads by ``assign()`` (no consumer-group join: on Tansu a join takes seconds) from
    ``high - window`` to the high watermark seen at start. A missing topic is empty.
    """
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": "retailpulse-dlq-dedup",  # required by the client; never joined
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    seen: set[DeadLetterId] = set()
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return seen
        ends: dict[int, int] = {}
        assign = []
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=timeout_s, cached=False
            )
            start = max(low, high - window)
            if high > start:
                ends[p] = high
                assign.append(TopicPartition(topic, p, start))
        if not assign:
            return seen
        consumer.assign(assign)
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise DeliveryError(
                    f"could not read back the tail of dead-letter topic {topic} within "
                    f"{timeout_s:.0f} s (partitions {sorted(ends)} unfinished); refusing to "
                    "start, since dead letters of a replayed epoch would be written twice"
                )
            for msg in consumer.consume(1000, 0.5):
                part, offset, err = msg.partition(), msg.offset(), msg.error()
                if part is None:
                    continue
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        ends.pop(part, None)
                    continue
                ident = dead_letter_id(msg.headers())
                if ident is not None:
                    seen.add(ident)
                if part in ends and offset is not None and offset >= ends[part] - 1:
                    ends.pop(part)
    except KafkaException as exc:
        raise DeliveryError(f"cannot read dead-letter topic {topic}: {exc}") from exc
    finally:
        consumer.close()
    return seen


class _DeadLetterPartition(StatelessSinkPartition[DeadLetter]):
    """Skips dead letters already on the topic: after a resume Bytewax replays the last
    epoch, and its dead letters were (partly) written before the crash."""

    def __init__(
        self, producer: ConfirmingProducer, topic: str, written: set[DeadLetterId]
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._written = written

    def write_batch(self, items: list[DeadLetter]) -> None:
        for dl in items:
            ident = (dl.source.topic, dl.source.partition, dl.source.offset)
            if ident in self._written:
                log.info("dead letter %s[%d]@%d already written: skipped", *ident)
                continue
            self._producer.produce(
                self._topic, dl.source.value, key=dl.source.key, headers=dl.headers()
            )
            log.warning(
                "dead letter: %s[%d]@%d %s/%s: %s",
                dl.source.topic,
                dl.source.partition,
                dl.source.offset,
                dl.stage,
                dl.error_class,
                dl.message,
            )
        self._producer.flush_or_raise()
        # Only confirmed ones count as written: a failed batch raises above, and is retried
        # in full after the restart.
        self._written.update((dl.source.topic, dl.source.partition, dl.source.offset)
                             for dl in items)  # fmt: skip


class DeadLetterSink(DynamicSink[DeadLetter]):
    """Writes each dead letter with its original key, value and headers plus ``rp.dlq.*``
    headers (source topic, partition, offset, schema id, stage, error class, message).

    Exactly once per source record across resumes: at start-up it reads back the last
    ``dedup_window`` messages of each dead-letter partition and skips records already there.
    """

    def __init__(
        self, kafka: KafkaSettings, topic: str, *, dedup_window: int = DLQ_DEDUP_WINDOW
    ) -> None:
        self._kafka = kafka
        self._config = producer_config(kafka)
        self._topic = topic
        self._window = dedup_window

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        written = (
            read_dead_letter_ids(self._kafka, self._topic, window=self._window)
            if self._window > 0
            else set()
        )
        if written:
            log.info("%d dead letters already on %s: replays of them are skipped",
                     len(written), self._topic)  # fmt: skip
        return _DeadLetterPartition(ConfirmingProducer(self._config), self._topic, written)


def create_topics(
    kafka: KafkaSettings, topics: TopicSettings, *, timeout_s: float = 30.0
) -> dict[str, str]:
    """Create every topic the flows use; idempotent. Returns topic -> "created" | "exists"."""
    admin = AdminClient(dict(kafka.client_config()))
    wanted = [
        NewTopic(
            name, num_partitions=topics.partitions, replication_factor=topics.replication_factor
        )
        for name in topics.all_topics()
    ]
    outcome: dict[str, str] = {}
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            outcome[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                outcome[name] = "exists"
            else:
                raise InfraError(f"cannot create topic {name}: {exc}") from exc
    return outcome
