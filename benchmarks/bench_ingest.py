"""End-to-end ingest throughput on the embedded broker and Redis.

Simulates DAYS days of history, produces it (timed), then runs the ingest dataflow bounded
over it (timed: decode, validate, counters, Redis writes) and reports events per second of
wall time and of CPU time, and peak memory.

    python -m benchmarks.bench_ingest [DAYS]
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import date

from benchmarks.common import peak_rss_mb, write_result
from infra.embedded import EmbeddedKafka, EmbeddedRedis
from streams.kafka_io import create_topics
from streams.produce import EventProducer
from streams.runner import run
from streams.settings import load_settings
from streams.simulator import SimulationConfig, Simulator


def main(days: int = 120) -> None:
    with EmbeddedKafka() as kafka, EmbeddedRedis() as redis_server:
        run_id = uuid.uuid4().hex[:6]
        settings = load_settings(
            env={},
            overrides={
                "kafka": {"bootstrap_servers": kafka.info.address},
                "redis": {"url": redis_server.info.address, "key_prefix": f"bench{run_id}"},
                "topics": {"partitions": 3},
            },
            use_embedded=False,
        )
        create_topics(settings.kafka, settings.topics)
        sim = Simulator(SimulationConfig(seed=11, start_date=date(2024, 11, 1), days=days))
        t0 = time.perf_counter()
        events = list(sim.events())
        t_gen = time.perf_counter() - t0
        producer = EventProducer(settings)
        t0, c0 = time.perf_counter(), time.process_time()
        counts = producer.send_all(events)
        t_prod, c_prod = time.perf_counter() - t0, time.process_time() - c0
        n = sum(counts.values())
        del events
        t0, c0 = time.perf_counter(), time.process_time()
        run(settings, live=False)
        t_run, c_run = time.perf_counter() - t0, time.process_time() - c0
    write_result(
        "ingest",
        {
            "days": days,
            "events": n,
            "per_family": dict(sorted(counts.items())),
            "simulate_events_per_s": round(n / t_gen),
            "produce_events_per_s_wall": round(n / t_prod),
            "produce_us_per_event_cpu": round(c_prod / n * 1e6, 2),
            "flow_events_per_s_wall": round(n / t_run),
            "flow_us_per_event_cpu": round(c_run / n * 1e6, 2),
            "flow_wall_s": round(t_run, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        },
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 120)
