"""Dataflow wiring: Kafka -> decode/validate -> dead letters | ingest counters -> Redis.

Step ids are part of the recovery state: renaming one silently discards its snapshots, so
they are constants here and a test pins them.

    kafka_in --decode--+--(failures)---------------------------> dead_letter_out (Kafka)
                       +--ingest_summary--ingest_totals--ingest_writes--> redis_out
                       +--(events)--dedup--> model flows (demand, customers, supply)
                                      +--(duplicates, model failures)--> dead_letter_out

Model flows plug in as :class:`FlowExtension` s: each receives the validated event stream
and returns the Redis writes it wants; every write goes through the one ``redis_out`` sink.
An extension prefixes its step ids with its own name (``demand.daily``...), so adding one
never renames another's steps. An extension whose ``build`` also sets an ``errors`` stream
(events it could not process, as ``process:<flow>`` dead letters) has it merged into the
one ``dead_letter_out`` sink (step ``merge_failures``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from infra.redis_sink import RedisSink
from processors.ingest import accumulate, summarize
from processors.records import DeadLetter, Event
from processors.writes import RedisWrite, ingest_writes
from streams.decode import BatchDecoder, Deduplicator
from streams.errors import ConfigError
from streams.kafka_io import DeadLetterSink
from streams.kafka_source import BalancedKafkaSource
from streams.registry import SchemaResolver
from streams.settings import KafkaSettings, Settings

__all__ = [
    "EXTENSION_STEP_IDS",
    "FLOW_ID",
    "LIVE_FETCH_CONFIG",
    "STEP_IDS",
    "IngestFlow",
    "InputPartitions",
    "build_flow",
    "consumer_overrides",
    "extension_errors",
    "input_partitions",
    "wait_for_topics",
]

log = logging.getLogger(__name__)

# fetch.wait.max.ms 50 (librdkafka: 500): a live fetch on a quiet partition returns within
# 50 ms, not half a second (bench_e2e live: p50 173 -> 62 ms to Redis); settings.kafka.client
# still overrides it. One consumer per worker (streams/kafka_source.py) keeps the broker's
# cost of that short wait small. benchmarks/e2e_floor.py's consumer reads with the same.
LIVE_FETCH_CONFIG: Mapping[str, str] = MappingProxyType({"fetch.wait.max.ms": "50"})



def consumer_overrides(kafka: KafkaSettings) -> dict[str, str]:
    """What the flow's consumers set over librdkafka's defaults (the user's settings win)."""
    return {**LIVE_FETCH_CONFIG, **kafka.client, "auto.offset.reset": "earliest"}


FLOW_ID = "retailpulse"
STEP_IDS = (
    "kafka_in",
    "decode",
    "split_failures",
    "dead_letter_out",
    "ingest_summary",
    "ingest_totals",
    "ingest_writes",
    "redis_out",
)
# Only present with model flows (merge_failures: with one that sets ``errors``).
# None holds state (dedup's window is deliberately not snapshotted: streams/decode.py).
EXTENSION_STEP_IDS = (
    "dedup",
    "split_duplicates",
    "merge_duplicates",
    "merge_writes",
    "merge_failures",
)


class FlowExtension(Protocol):
    """A model flow: ``name`` prefixes its step ids; ``build`` wires its steps."""

    name: str

    def build(self, events: Stream[Event], settings: Settings) -> Stream[RedisWrite]: ...


def extension_errors(ext: FlowExtension) -> Stream[DeadLetter] | None:
    """The dead letters a built extension emits, if it has any (the optional ``errors``)."""
    errors: Stream[DeadLetter] | None = getattr(ext, "errors", None)
    return errors


@dataclass(frozen=True)
class InputPartitions:
    """The input partitions a model flow's event-time sequencer waits for (docs/event-time.md).

    Bounded: only partitions holding data when the flow starts (an empty one would hold
    the watermark until the end), each with its end offset: a partition stops holding the
    watermark once its last record has arrived. Live: every partition (one that stays
    silent is released by the idle rule, so a flow started before its data still waits
    for each partition's first record); ends are not final there.

    >>> ip = InputPartitions({"t.orders": ("orders", ((0, 5), (1, 9)))}, live=False)
    >>> ip.expected({"orders"})
    [('orders', 't.orders', 0), ('orders', 't.orders', 1)]
    >>> ip.ends({"orders"})
    {('t.orders', 0): 5, ('t.orders', 1): 9}
    """

    topics: Mapping[str, tuple[str, tuple[tuple[int, int], ...]]]  # topic -> (family, ends)
    live: bool

    def expected(self, families: Collection[str]) -> list[tuple[str, str, int]]:
        return [(fam, topic, p) for topic, (fam, parts) in sorted(self.topics.items())
                if fam in families for p, _ in parts]  # fmt: skip

    def ends(self, families: Collection[str]) -> dict[tuple[str, int], int]:
        if self.live:
            return {}
        return {(topic, p): end for topic, (fam, parts) in self.topics.items()
                if fam in families for p, end in parts}  # fmt: skip


def input_partitions(
    kafka: KafkaSettings, topic_families: Mapping[str, str], *, live: bool, timeout_s: float = 10
) -> InputPartitions:
    """Partitions of each input topic (bounded: those holding data now), with their ends.

    The end is the offset after the last record, read back rather than taken from the
    high watermark: Tansu reports a high watermark per record *batch* (7 records produced
    as one batch: high watermark 1), which would call a partition finished too early.
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer({**kafka.client_config(), "group.id": "retailpulse-metadata",
                         "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    out: dict[str, tuple[str, tuple[tuple[int, int], ...]]] = {}
    try:
        listed = consumer.list_topics(timeout=timeout_s).topics or {}
        highs: dict[tuple[str, int], int] = {}
        for topic in sorted(topic_families):
            meta = listed.get(topic)
            for p in sorted(meta.partitions) if meta is not None and meta.partitions else []:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=timeout_s, cached=False
                )
                if high > low or live:  # live: an empty one turns idle after IDLE_RELEASE_S
                    highs[(topic, p)] = high
        ends = dict(highs)
        if highs and not live:  # read each partition's tail: its true last offset
            consumer.assign([TopicPartition(t, p, h - 1) for (t, p), h in highs.items()])
            pending = set(highs)
            deadline = time.monotonic() + timeout_s
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(1000, 0.5):
                    t, p, offset, err = msg.topic(), msg.partition(), msg.offset(), msg.error()
                    if t is None or p is None:
                        continue
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard((t, p))
                        continue
                    if offset is not None:
                        ends[(t, p)] = max(ends[(t, p)], offset + 1)
            if pending:
                raise ConfigError(f"could not read the end of input partitions {sorted(pending)}")
        for topic, family in sorted(topic_families.items()):
            parts = tuple(sorted((p, end) for (t, p), end in ends.items() if t == topic))
            out[topic] = (family, parts)
    except KafkaException as exc:
        raise ConfigError(f"cannot read input partitions from Kafka: {exc}") from exc
    finally:
        consumer.close()
    return InputPartitions(out, live)


@dataclass(frozen=True)
class IngestFlow:
    flow: Dataflow
    events: Stream[Event]
    writes: Stream[RedisWrite]


def build_flow(
    settings: Settings,
    resolver: SchemaResolver,
    *,
    tail: bool,
    source: Source[Any] | None = None,
    dead_letter_sink: Sink[DeadLetter] | None = None,
    redis_sink: Sink[RedisWrite] | None = None,
    extensions: Sequence[FlowExtension] = (),
) -> IngestFlow:
    """The ingest dataflow. ``tail=False`` stops at the end of every partition (bounded).

    Tests pass Bytewax's ``TestingSource`` / ``TestingSink`` in place of Kafka and Redis.
    """
    topic_families = {topic: family for family, topic in settings.topics.input_topics().items()}
    if source is None:
        wait_for_topics(settings.kafka, list(topic_families))
        source = BalancedKafkaSource(
            brokers=[settings.kafka.bootstrap_servers],
            topics=list(topic_families),
            tail=tail,
            # An explicit offset 0 rather than OFFSET_BEGINNING: same meaning, but Tansu
            # answers it at once instead of after ~0.5 s per partition.
            starting_offset=0,
            add_config=consumer_overrides(settings.kafka),
            batch_size=settings.run.batch_size,
            raise_on_errors=False,  # consumer errors come out as data; the decoder judges them
        )
        if extensions:
            # Model flows sequence events by event time and wait for every partition that
            # holds data (docs/event-time.md): a flow that wants them has the attribute.
            known = input_partitions(settings.kafka, topic_families, live=tail)
            for ext in extensions:
                if hasattr(ext, "input_partitions"):
                    ext.input_partitions = known
    flow = Dataflow(FLOW_ID)
    messages = op.input("kafka_in", flow, source)
    decoded = op.flat_map_batch(
        "decode",
        messages,
        BatchDecoder(
            topic_families,
            resolver,
            settings.validation,
            max_bytes=settings.serde.max_message_bytes,
            log_every_s=settings.run.log_every_s,
        ),
    )
    split = op.branch("split_failures", decoded, lambda item: isinstance(item, Event))
    failures: Stream[DeadLetter] = split.falses  # type: ignore[assignment]
    events: Stream[Event] = split.trues  # type: ignore[assignment]
    deltas = op.flat_map_batch("ingest_summary", decoded, summarize)
    totals = op.stateful_map("ingest_totals", deltas, accumulate)
    writes: Stream[RedisWrite] = op.flat_map("ingest_writes", totals, ingest_writes)
    if extensions:
        # Only the model flows count an event twice if it was produced twice: drop repeats
        # (as dead letters) on their way in; the ingest counters above count records.
        checked = op.flat_map_batch("dedup", events, Deduplicator(settings))
        unique = op.branch("split_duplicates", checked, lambda item: isinstance(item, Event))
        failures = op.merge("merge_duplicates", failures, unique.falses)
        model_events: Stream[Event] = unique.trues  # type: ignore[assignment]
        extra = [ext.build(model_events, settings) for ext in extensions]
        writes = op.merge("merge_writes", writes, *extra)
        # Read after build(): a flow sets its errors stream while wiring its steps.
        flow_errors = [e for e in map(extension_errors, extensions) if e is not None]
        if flow_errors:
            failures = op.merge("merge_failures", failures, *flow_errors)
    if dead_letter_sink is None:
        dead_letter_sink = DeadLetterSink(settings.kafka, settings.topics.dead_letter)
    op.output("dead_letter_out", failures, dead_letter_sink)
    if redis_sink is None:
        redis_sink = RedisSink(
            settings.redis.require_url(),
            prefix=settings.redis.key_prefix,
            retry_timeout_s=settings.redis.retry_timeout_s,
        )
    op.output("redis_out", writes, redis_sink)
    return IngestFlow(flow, events, writes)


def wait_for_topics(
    kafka: KafkaSettings,
    topics: Sequence[str],
    *,
    missing_grace_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Block until the broker answers and lists every input topic.

    A broker that does not answer is waited for indefinitely (logged every ~30 s): the flow
    starts with the broker, whichever comes first. A broker that answers without our topics
    gets ``missing_grace_s`` (someone may be running ``retailpulse topics create``), then
    :class:`ConfigError`. Without this, Bytewax's KafkaSource fails at once on a topic that
    is not there yet.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {**kafka.client_config(), "log_level": 0}
    config["error_cb"] = lambda _err: None  # "broker down" is expected here: no log spam
    admin = AdminClient(config)
    started = clock()
    missing_since: float | None = None
    next_log = started + 30.0
    while True:
        try:
            listed = admin.list_topics(timeout=2.0).topics or {}
        except KafkaException as exc:  # broker down or unreachable: keep waiting
            missing_since, why = None, f"broker {kafka.bootstrap_servers} does not answer ({exc})"
        else:
            missing = [t for t in topics if t not in listed or listed[t].error is not None]
            if not missing:
                return
            now = clock()
            missing_since = now if missing_since is None else missing_since
            if now - missing_since >= missing_grace_s:
                raise ConfigError(
                    f"input topics missing on {kafka.bootstrap_servers}: {', '.join(missing)} "
                    "(create them with `retailpulse topics create`)"
                )
            why = f"topics missing: {', '.join(missing)}"
        if clock() >= next_log:
            log.warning("waiting for Kafka for %.0f s: %s", clock() - started, why)
            next_log = clock() + 30.0
        time.sleep(0.5)
