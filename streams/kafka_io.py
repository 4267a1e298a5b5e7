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
from collections.abc import Iterable, Mapping
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from processors.records import DeadLetter
from streams.errors import DeliveryError, InfraError
from streams.settings import KafkaSettings, TopicSettings

__all__ = ["ConfirmingProducer", "DeadLetterSink", "create_topics", "producer_config"]

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


class _DeadLetterPartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, producer: ConfirmingProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def write_batch(self, items: list[DeadLetter]) -> None:
        for dl in items:
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


class DeadLetterSink(DynamicSink[DeadLetter]):
    """Writes each dead letter with its original key, value and headers plus ``rp.dlq.*``
    headers (source topic, partition, offset, schema id, stage, error class, message)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._config = producer_config(kafka)
        self._topic = topic

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        return _DeadLetterPartition(ConfirmingProducer(self._config), self._topic)


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
