"""Dataflow wiring: Kafka -> decode/validate -> dead letters | ingest counters -> Redis.

Step ids are part of the recovery state: renaming one silently discards its snapshots, so
they are constants here and a test pins them.

    kafka_in --decode--+--(failures)---------------------------> dead_letter_out (Kafka)
                       +--ingest_summary--ingest_totals--ingest_writes--> redis_out
                       +--(events)--> model flows (demand, customers, supply)

Model flows plug in as :class:`FlowExtension` s: each receives the validated event stream
and returns the Redis writes it wants; every write goes through the one ``redis_out`` sink.
An extension prefixes its step ids with its own name (``demand.daily``...), so adding one
never renames another's steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from infra.redis_sink import RedisSink
from processors.ingest import accumulate, summarize
from processors.records import DeadLetter, Event
from processors.writes import RedisWrite, ingest_writes
from streams.decode import BatchDecoder
from streams.kafka_io import DeadLetterSink
from streams.registry import SchemaResolver
from streams.settings import Settings

__all__ = ["FLOW_ID", "STEP_IDS", "IngestFlow", "build_flow"]

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


class FlowExtension(Protocol):
    """A model flow: ``name`` prefixes its step ids; ``build`` wires its steps."""

    name: str

    def build(self, events: Stream[Event], settings: Settings) -> Stream[RedisWrite]: ...


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
        source = KafkaSource(
            brokers=[settings.kafka.bootstrap_servers],
            topics=list(topic_families),
            tail=tail,
            # An explicit offset 0 rather than OFFSET_BEGINNING: same meaning, but Tansu
            # answers it at once instead of after ~0.5 s per partition.
            starting_offset=0,
            add_config={**settings.kafka.client, "auto.offset.reset": "earliest"},
            batch_size=settings.run.batch_size,
            raise_on_errors=False,  # consumer errors come out as data; the decoder judges them
        )
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
    if dead_letter_sink is None:
        dead_letter_sink = DeadLetterSink(settings.kafka, settings.topics.dead_letter)
    op.output("dead_letter_out", failures, dead_letter_sink)

    deltas = op.flat_map_batch("ingest_summary", decoded, summarize)
    totals = op.stateful_map("ingest_totals", deltas, accumulate)
    writes: Stream[RedisWrite] = op.flat_map("ingest_writes", totals, ingest_writes)
    if extensions:
        extra = [ext.build(events, settings) for ext in extensions]
        writes = op.merge("merge_writes", writes, *extra)
    if redis_sink is None:
        redis_sink = RedisSink(
            settings.redis.require_url(),
            prefix=settings.redis.key_prefix,
            retry_timeout_s=settings.redis.retry_timeout_s,
        )
    op.output("redis_out", writes, redis_sink)
    return IngestFlow(flow, events, writes)
