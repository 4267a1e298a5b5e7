"""The floor under the live latency: the same load, read by a consumer that does nothing.

Why: in the live benchmark everything shares the two cores, the embedded broker and the
benchmark's producer included, and a latency target can fail before the flow does any
work. :func:`measure_floor` produces exactly as :func:`benchmarks.e2e_live.measure_latency`
does (same planned send times, same producer settings) onto fresh topics while a plain
librdkafka consumer with the flow's live fetch settings, in a process of its own as the
flow is, notes when each message reaches it. No flow and no Redis poller run meanwhile, so
its latency is a lower bound on the flow's on this broker at this load.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from benchmarks.e2e_live import new_producer, pct, plan_messages, send_planned
from streams.settings import Settings

__all__ = ["measure_floor"]


def _consume_all(
    config: dict[str, Any],
    parts: list[tuple[str, int]],
    ready: Any,
    stop: Any,
    count: Any,
    out: Any,
) -> None:
    """The floor's consumer (its own process, as the flow is): when each message arrived."""
    consumer = Consumer({**config, "group.id": "retailpulse-floor", "enable.auto.commit": False})
    consumer.assign([TopicPartition(t, p, 0) for t, p in parts])
    seen: list[tuple[str, int, int, float]] = []
    consumer.consume(1, 0.5)  # connected and fetching before the clock starts
    ready.set()
    while not stop.is_set():
        # What is buffered, else wait for the next message: consume(n, timeout) would wait
        # for n messages or the whole timeout, adding its own delay to the figure.
        batch = consumer.consume(1000, 0) or consumer.consume(1, 0.05)
        now = time.time()
        seen.extend(
            (m.topic() or "", m.partition() or 0, m.offset() or 0, now)
            for m in batch
            if not m.error()
        )
        count.value = len(seen)
    consumer.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put((seen, usage.ru_utime + usage.ru_stime))


def measure_floor(
    settings: Settings,
    events: Iterable[Any],
    *,
    rate: float,
    duration_s: float,
    consumer_config: dict[str, Any],
    drain_s: float = 10.0,
    linger_ms: int = 5,
) -> dict[str, Any]:
    """Planned send -> handed to a plain consumer with ``consumer_config``; figures.

    ``settings`` names fresh topics (offset 0 is where the run starts) and the producer's
    client settings; ``rate``, ``duration_s`` and ``linger_ms`` as for ``measure_latency``.
    """
    parts = [
        (topic, p)
        for topic in settings.topics.input_topics().values()
        for p in range(settings.topics.partitions)
    ]
    ctx = multiprocessing.get_context("spawn")  # never fork a process holding librdkafka
    ready, stop, count, out = ctx.Event(), ctx.Event(), ctx.Value("q", 0), ctx.Queue()
    child = ctx.Process(target=_consume_all, args=(consumer_config, parts, ready, stop, count, out))
    child.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the floor's consumer did not start within 60 s")
        plan, start_s = plan_messages(settings, events, rate, duration_s, model_every=1)
        producer = new_producer(settings, linger_ms)
        sent, produced_s, lag = send_planned(plan, start_s, producer)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and count.value < len(sent):
            time.sleep(0.05)
        stop.set()
        seen, consumer_cpu_s = out.get(timeout=60)
    finally:
        stop.set()
        child.join(30)
        if child.is_alive():
            child.kill()
    arrived = {(t, p, o): when for t, p, o, when in seen}
    lat = sorted(arrived[(t, p, o)] - due for due, t, p, o, _ in sent if (t, p, o) in arrived)
    acked = sorted(t_ack - due for due, _, _, _, t_ack in sent)
    return {
        "target_rate": round(rate, 1),
        "achieved_rate": round(len(sent) / max(produced_s, 1e-9), 1),
        "messages": len(sent),
        "not_consumed": len(sent) - len(lat),
        "latency_ms_p50": pct(0.50, lat),
        "latency_ms_p90": pct(0.90, lat),
        "latency_ms_p99": pct(0.99, lat),
        "latency_ms_max": round(lat[-1] * 1000, 1) if lat else None,
        "producer_linger_ms": linger_ms,
        "broker_ack_ms_p50": pct(0.50, acked),
        "broker_ack_ms_p99": pct(0.99, acked),
        "producer_max_lag_ms": round(lag * 1000, 1),
        "consumer_cpu_s": round(consumer_cpu_s, 2),
        "consumer_config": {k: v for k, v in consumer_config.items() if k != "bootstrap.servers"},
    }
