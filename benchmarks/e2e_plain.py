"""The cost floor: the same work as ``retailpulse run`` in one plain confluent-kafka loop.

No Bytewax: one ``Consumer`` with a manual assignment (no group join: Tansu's is slow) reads
every partition of every input topic from offset 0 to its end, and each batch goes through
the very objects the dataflow's steps call, in the same order:

    BatchDecoder (decode + validate) -> summarize / accumulate / ingest_writes
    -> Deduplicator -> demand _EngineLogic
    -> supply _Router / _CoverLogic (per shard key) / _EngineLogic
    -> customers _BookLogic -> RedisWriter.write (one pipelined batch) ; dead letters -> Kafka
    and at the end of input each stateful step's ``on_eof`` (the event-time sequencers flush)

so the difference between a Bytewax run and this loop is what the framework costs
(operator hops, per-item callbacks, routing, batching, state bookkeeping). Each stage is
timed with ``time.thread_time`` around its call, per batch: that is the per-stage cost
without a profiler's overhead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage
from confluent_kafka import Consumer, KafkaError, TopicPartition

from infra.redis_sink import RedisWriter
from processors.demand_engine import _FAMILIES as DEMAND_FAMILIES
from processors.ingest import IngestTotals, accumulate, summarize
from processors.records import DeadLetter, Event
from processors.shards import Shards
from processors.writes import RedisWrite, ingest_writes
from streams.dataflow import InputPartitions, input_partitions
from streams.decode import BatchDecoder, Deduplicator, EventDeadLetters, process_failures
from streams.flows import customers as customers_flow
from streams.flows import demand as demand_flow
from streams.flows.customers import _BookLogic
from streams.flows.demand import _EngineLogic as DemandLogic
from streams.flows.supply import _CoverLogic, _ForecastMoves, _Router
from streams.flows.supply import _EngineLogic as SupplyLogic
from streams.kafka_io import ConfirmingProducer, producer_config
from streams.registry import SchemaCatalog, SchemaResolver, build_resolver
from streams.runner import tune_process
from streams.settings import Settings

__all__ = ["STAGES", "FlowSteps", "run_plain"]

STAGES = (
    "kafka_read",
    "decode_validate",
    "ingest",
    "dedup",
    "demand",
    "supply",
    "customers",
    "redis_write",
    "dead_letters",
)


class _Timer:
    """Accumulates thread CPU seconds per stage."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    def __call__(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.thread_time()
        out = fn(*args)
        self.cpu[stage] += time.thread_time() - t0
        return out


def _wrap(msg: Any) -> KafkaSourceMessage[bytes | None, bytes | None]:
    # What Bytewax's KafkaSource hands the decode step; BatchDecoder reads these fields.
    return KafkaSourceMessage(
        key=msg.key(),
        value=msg.value(),
        topic=msg.topic(),
        headers=msg.headers() or [],
        offset=msg.offset(),
        partition=msg.partition(),
        timestamp=msg.timestamp(),
    )


def _split(items: Iterable[Any]) -> tuple[list[RedisWrite], list[DeadLetter]]:
    writes: list[RedisWrite] = []
    dead: list[DeadLetter] = []
    for item in items:
        (dead if isinstance(item, DeadLetter) else writes).append(item)
    return writes, dead


class _Supply:
    """The supply flow's three stateful steps, keyed by hand like Bytewax keys them."""

    def __init__(
        self, settings: Settings, failures: EventDeadLetters, parts: InputPartitions | None
    ) -> None:
        shards = Shards(settings.run.shards)
        self.router = _Router(shards, failures)
        self.forecast_moves = _ForecastMoves(shards)
        self.alpha = settings.supply.demand_alpha
        self.covers: dict[str, _CoverLogic] = {}
        self.engine = SupplyLogic(settings.supply, None, failures, parts)

    def eof(self, demand_writes: list[RedisWrite]) -> list[Any]:
        """End of input: the last forecasts' covers, then the engine's sequencer flushed."""
        out = self([], demand_writes)
        eof, _ = self.engine.on_eof()
        return out + list(eof)

    def __call__(self, events: list[Event], demand_writes: list[RedisWrite]) -> list[Any]:
        routed = self.router(events) if events else []
        routed.extend(self.forecast_moves(demand_writes))
        grouped: dict[str, list[Any]] = {}
        for key, item in routed:
            grouped.setdefault(key, []).append(item)
        to_engine: list[Any] = []
        for key, values in grouped.items():
            logic = self.covers.get(key)
            if logic is None:
                logic = self.covers[key] = _CoverLogic(self.alpha, None)
            out, _ = logic.on_batch(values)
            to_engine.extend(out)  # all of it to the engine's one key
        if not to_engine:
            return []
        out, _ = self.engine.on_batch(to_engine)
        return list(out)


class FlowSteps:
    """One batch of consumed messages through every step of the dataflow, timed per stage."""

    def __init__(
        self,
        settings: Settings,
        resolver: SchemaResolver,
        parts: InputPartitions | None = None,
    ) -> None:
        # ``parts``: the partitions the model flows' event-time sequencers wait for, as
        # build_flow passes them (None, as with a TestingSource: the sequencers wait only
        # for partitions that have delivered something).
        topic_families = {t: f for f, t in settings.topics.input_topics().items()}
        self.decoder = BatchDecoder(
            topic_families,
            resolver,
            settings.validation,
            max_bytes=settings.serde.max_message_bytes,
            log_every_s=settings.run.log_every_s,
        )
        self.dedup = Deduplicator(settings)
        self.demand = DemandLogic(
            demand_flow.new_state(settings.demand, settings.run.timezone, parts),
            process_failures("demand", settings),
        )
        self.supply = _Supply(settings, process_failures("supply", settings), parts)
        self.customers = _BookLogic(
            customers_flow.new_state(settings.customers, parts),
            process_failures("customers", settings),
        )
        self.totals: dict[str, IngestTotals] = {}
        self.timer = _Timer()

    def _ingest(self, decoded: list[Event | DeadLetter]) -> list[RedisWrite]:
        out: list[RedisWrite] = []
        for family, delta in summarize(decoded):
            self.totals[family], emitted = accumulate(self.totals.get(family), delta)
            out.extend(ingest_writes((family, emitted)))
        return out

    def process(self, batch: list[Any]) -> tuple[list[RedisWrite], list[DeadLetter]]:
        """Redis writes and dead letters of one batch of ``KafkaSourceMessage`` s."""
        timer = self.timer
        decoded = timer("decode_validate", self.decoder, batch)
        events = [x for x in decoded if isinstance(x, Event)]
        dead = [x for x in decoded if not isinstance(x, Event)]
        writes: list[RedisWrite] = timer("ingest", self._ingest, decoded)
        checked = timer("dedup", self.dedup, events)
        events = [x for x in checked if isinstance(x, Event)]
        dead += [x for x in checked if not isinstance(x, Event)]
        relevant = [e for e in events if e.family in DEMAND_FAMILIES]
        d_writes, d_dead = _split(timer("demand", self.demand.on_batch, [relevant])[0])
        s_writes, s_dead = _split(timer("supply", self.supply, events, d_writes))
        mine = [e for e in events if e.family in ("orders", "clickstream", "catalog")]
        c_writes, c_dead = _split(timer("customers", self.customers.on_batch, [mine])[0])
        return writes + d_writes + s_writes + c_writes, dead + d_dead + s_dead + c_dead

    def eof(self) -> tuple[list[RedisWrite], list[DeadLetter]]:
        """End of input: flush what the sequencers still hold, in the flows' order."""
        timer = self.timer
        d_writes, d_dead = _split(timer("demand", self.demand.on_eof)[0])
        s_writes, s_dead = _split(timer("supply", self.supply.eof, d_writes))
        c_writes, c_dead = _split(timer("customers", self.customers.on_eof)[0])
        return d_writes + s_writes + c_writes, d_dead + s_dead + c_dead


def run_plain(settings: Settings, *, batch_size: int = 1000) -> dict[str, Any]:
    """Read every input topic to its end doing the flow's work; figures per stage."""
    topic_families = {t: f for f, t in settings.topics.input_topics().items()}
    resolver = build_resolver(
        SchemaCatalog.load(),
        registry_url=settings.serde.schema_registry_url,
        registry_config=settings.serde.schema_registry,
        topics=settings.topics.input_topics(),
    )
    parts = input_partitions(settings.kafka, topic_families, live=False)
    steps = FlowSteps(settings, resolver, parts)
    tune_process(settings.run)  # the same process settings as the flow's run
    writer = RedisWriter(
        settings.redis.require_url(),
        prefix=settings.redis.key_prefix,
        retry_timeout_s=settings.redis.retry_timeout_s,
    )
    dlq = ConfirmingProducer(producer_config(settings.kafka))
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": "retailpulse-bench-plain",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    assigned = [
        TopicPartition(t, p, 0) for t in topic_families for p in range(settings.topics.partitions)
    ]
    consumer.assign(assigned)
    open_parts = {(tp.topic, tp.partition) for tp in assigned}
    timer = steps.timer
    n_msgs = n_writes = 0
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    while True:
        if not open_parts:
            writes, dead = steps.eof()
            n_writes += len(writes)
            timer("redis_write", writer.write, writes)
            if dead:
                timer("dead_letters", _send_dead, dlq, settings.topics.dead_letter, dead)
            break
        t0 = time.thread_time()
        msgs = []
        for m in consumer.consume(batch_size, 0.2):
            err = m.error()
            if err is None:
                msgs.append(_wrap(m))
            elif err.code() == KafkaError._PARTITION_EOF:
                open_parts.discard((m.topic(), m.partition()))
            else:
                raise RuntimeError(f"consumer error: {err}")
        timer.cpu["kafka_read"] += time.thread_time() - t0
        if not msgs:
            continue
        n_msgs += len(msgs)
        writes, dead = steps.process(msgs)
        n_writes += len(writes)
        timer("redis_write", writer.write, writes)
        if dead:
            timer("dead_letters", _send_dead, dlq, settings.topics.dead_letter, dead)
    wall = time.perf_counter() - t_wall
    cpu = time.process_time() - t_cpu
    consumer.close()
    writer.close()
    return {
        "messages": n_msgs,
        "redis_writes_requested": n_writes,
        "loop_wall_s": wall,
        "loop_cpu_s": cpu,
        "stage_cpu_s": timer.cpu,
    }


def _send_dead(producer: ConfirmingProducer, topic: str, dead: list[DeadLetter]) -> None:
    for dl in dead:
        producer.produce(topic, dl.source.value, key=dl.source.key, headers=dl.headers())
    producer.flush_or_raise()
