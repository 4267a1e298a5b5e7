"""The decode step: Kafka messages in, validated :class:`Event` s and :class:`DeadLetter` s out.

Failures are returned as data, never raised: a record that does not decode or validate
becomes a dead letter carrying its original bytes and the reason, and the batch goes on.
One call handles a whole batch (``op.flat_map_batch``) to keep per-event Python overhead low.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from prometheus_client import Counter

from processors.records import DeadLetter, Event, SourceRecord
from processors.validation import ValidationLimits, validate
from streams.errors import DecodeError, ValidationError
from streams.registry import SchemaResolver
from streams.serde import AvroDeserializer

__all__ = ["BatchDecoder", "to_source_record"]

log = logging.getLogger(__name__)

EVENTS_IN = Counter("retailpulse_events_total", "Events decoded and validated", ["family"])
DEAD_LETTERS = Counter(
    "retailpulse_dead_letters_total", "Records sent to the dead-letter topic", ["family", "stage"]
)

Incoming = KafkaSourceMessage[bytes | None, bytes | None] | KafkaError[bytes | None, bytes | None]


def _broker_time(msg: KafkaSourceMessage[Any, Any]) -> int | None:
    """The message timestamp in ms, or None when the broker has none (type 0)."""
    if msg.timestamp is None or msg.timestamp[0] == 0:
        return None
    return int(msg.timestamp[1])


def to_source_record(msg: KafkaSourceMessage[Any, Any]) -> SourceRecord:
    """Our own (Kafka-free, picklable) copy of a consumed message."""
    return SourceRecord(
        topic=msg.topic or "",
        partition=msg.partition if msg.partition is not None else -1,
        offset=msg.offset if msg.offset is not None else -1,
        key=msg.key,
        value=msg.value,
        headers=tuple(
            (k, v if isinstance(v, bytes) else bytes(v or b"")) for k, v in msg.headers or ()
        ),
        timestamp_ms=_broker_time(msg),
    )


class _RateLog:
    """Logs events per second per family every ``every_s`` seconds of wall time."""

    def __init__(self, every_s: float, clock: Callable[[], float]) -> None:
        self._every_s = every_s
        self._clock = clock
        self._since = clock()
        self._counts: dict[str, int] = {}
        self._other = 0

    def add(self, accepted: Mapping[str, int], other: int) -> None:
        for family, n in accepted.items():
            self._counts[family] = self._counts.get(family, 0) + n
        self._other += other
        now = self._clock()
        elapsed = now - self._since
        if self._every_s <= 0 or elapsed < self._every_s:
            return
        rates = ", ".join(f"{f} {n / elapsed:,.0f}/s" for f, n in sorted(self._counts.items()))
        log.info("ingest: %s; dead letters and errors %d", rates or "idle", self._other)
        self._since, self._counts, self._other = now, {}, 0


class BatchDecoder:
    """Decode and validate a batch of messages from any of the input topics."""

    def __init__(
        self,
        topic_families: Mapping[str, str],
        resolver: SchemaResolver,
        limits: ValidationLimits,
        *,
        max_bytes: int = 1_000_000,
        log_every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._families = dict(topic_families)
        # Operator log lines only: processing itself never reads a clock.
        self._rates = _RateLog(log_every_s, clock)
        self._limits = limits
        self._decoders = {
            family: AvroDeserializer(resolver, family, max_bytes=max_bytes)
            for family in set(self._families.values())
        }

    def __call__(self, batch: list[Incoming]) -> list[Event | DeadLetter]:
        out: list[Event | DeadLetter] = []
        accepted: dict[str, int] = {}
        for msg in batch:
            if isinstance(msg, KafkaError):
                self._consumer_error(msg)
                continue
            topic = msg.topic or ""
            family = self._families.get(topic)
            if family is None:  # cannot happen with our source; never drop silently anyway
                out.append(self._dead(msg, "?", "route", "RoutingError", f"no family for {topic}"))
                continue
            schema_id: int | None = None
            try:
                record, schema_id = self._decoders[family](msg.value)
                validate(family, record, broker_time_ms=_broker_time(msg), limits=self._limits)
            except DecodeError as exc:
                out.append(
                    self._dead(msg, family, "decode", type(exc).__name__, str(exc), exc.schema_id)
                )
                continue
            except ValidationError as exc:
                out.append(
                    self._dead(msg, family, "validate", type(exc).__name__, str(exc), schema_id)
                )
                continue
            key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
            out.append(
                Event(
                    family,
                    key,
                    record,
                    record["event_time"],
                    schema_id,
                    topic,
                    msg.partition or 0,
                    msg.offset or 0,
                )
            )
            accepted[family] = accepted.get(family, 0) + 1
        for family, n in accepted.items():
            EVENTS_IN.labels(family).inc(n)
        self._rates.add(accepted, len(batch) - sum(accepted.values()))
        return out

    @staticmethod
    def _dead(
        msg: KafkaSourceMessage[Any, Any],
        family: str,
        stage: str,
        error_class: str,
        message: str,
        schema_id: int | None = None,
    ) -> DeadLetter:
        DEAD_LETTERS.labels(family, stage).inc()
        return DeadLetter(to_source_record(msg), family, stage, error_class, message, schema_id)

    @staticmethod
    def _consumer_error(err: KafkaError[Any, Any]) -> None:
        # Transport errors are retried by librdkafka itself; a fatal one means this consumer
        # can never make progress again, so stop loudly rather than spin.
        if err.err.fatal():
            raise RuntimeError(f"fatal Kafka consumer error: {err.err.str()}")
        log.warning("Kafka consumer error (retrying): %s", err.err.str())
