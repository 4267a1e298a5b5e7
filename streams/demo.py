"""``retailpulse demo``: the whole path on the embedded servers, in one command.

Starts Tansu (Kafka-compatible, memory storage: dev and demos only) and Valkey as child
processes on free 127.0.0.1 ports, creates the topics, backfills simulated history with a
progress bar, slips in a few malformed records so the dead-letter path shows, runs the
flows bounded, and prints what landed in Redis. Ctrl-C (or the end) stops every process
it started.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

from streams.settings import Settings

__all__ = ["add_demo_parser"]

POISON: tuple[tuple[str, bytes], ...] = (
    ("orders", b"not avro at all"),
    ("orders", b"\x00\x00\x00\x03\xe7" + b"\x02x"),  # unknown schema id 999
    ("clickstream", b"\x00\x00\x00\x00\x65\x02"),  # truncated clickstream record
    ("supplier", b""),  # empty value
)


def add_demo_parser(sub: Any) -> None:
    demo = sub.add_parser("demo", help="embedded stack + simulated year + flows, end to end")
    demo.add_argument("--days", type=int, default=365)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--start-date", help="first simulated day, YYYY-MM-DD")
    demo.add_argument("--skus", type=int)
    demo.add_argument("--stores", type=int)
    demo.add_argument("--customers", type=int)
    demo.add_argument("--keep", action="store_true", help="keep the servers up until Ctrl-C")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from infra.embedded import EmbeddedKafka, EmbeddedRedis

    log_dir = settings.state_dir / "demo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedKafka(log_dir=log_dir) as kafka, EmbeddedRedis(log_dir=log_dir) as redis_server:
        settings = settings.replace(
            kafka=dataclasses.replace(settings.kafka, bootstrap_servers=kafka.info.address),
            redis=dataclasses.replace(settings.redis, url=redis_server.info.address),
        )
        print(
            f"Kafka (Tansu, in memory, dev/demo only): {kafka.info.address}  pid {kafka.info.pid}"
        )
        print(f"Redis (Valkey): {redis_server.info.address}  pid {redis_server.info.pid}")
        _pipeline(args, settings)
        if args.keep:
            print(
                "servers stay up; point other commands at them with --bootstrap-servers "
                f"{kafka.info.address} --redis-url {redis_server.info.address}. Ctrl-C stops."
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    print("stopped the embedded servers")
    return 0


def _pipeline(args: argparse.Namespace, settings: Settings) -> None:
    from streams.cli import backfill, simulation_config
    from streams.kafka_io import ConfirmingProducer, create_topics, producer_config
    from streams.metrics import ingest_snapshot
    from streams.produce import EventProducer
    from streams.runner import run
    from streams.simulator import Simulator

    started = time.monotonic()
    created = create_topics(settings.kafka, settings.topics)
    print(f"topics: {', '.join(created)}")

    sim = Simulator(simulation_config(args))
    producer = EventProducer(settings)
    backfill(sim, producer, args.days)
    raw = ConfirmingProducer(producer_config(settings.kafka))
    for family, value in POISON:
        raw.produce(settings.topics.input_topic(family), value, key=b"poison")
    raw.flush_or_raise()
    produced = sum(producer.counts.values())
    print(
        f"produced {produced:,} events and {len(POISON)} malformed records "
        f"in {time.monotonic() - started:.1f} s"
    )

    t0 = time.monotonic()
    run(settings, live=False)
    elapsed = time.monotonic() - t0
    print(
        f"flows ran bounded over {produced + len(POISON):,} records in {elapsed:.1f} s "
        f"({(produced + len(POISON)) / elapsed:,.0f} records/s)"
    )

    import redis

    client = redis.Redis.from_url(settings.redis.require_url())
    snapshot = ingest_snapshot(client, settings.redis.key_prefix)
    client.close()
    print(f"\nRedis ({settings.redis.key_prefix}:v1:ingest:<family>):")
    print(f"{'family':12} {'events':>9} {'dead letters':>13}  last event time")
    for family, snap in snapshot.items():
        last = snap["last_event_time"]
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(last / 1000)) if last >= 0 else "-"
        print(f"{family:12} {snap['events']:>9,} {snap['dead_letters']:>13}  {when}")
    print(json.dumps({"dead_letter_topic": settings.topics.dead_letter}))
    _model_reports(settings)


def _model_reports(settings: Settings) -> None:
    """What the model flows published: the same text as ``retailpulse report <flow>``."""
    import redis

    from streams.cli import model_reports

    client = redis.Redis.from_url(settings.redis.require_url())
    try:
        for name, report in model_reports().items():
            print(f"\n== retailpulse report {name} ==")
            print(report(client, settings.redis.key_prefix))
    finally:
        client.close()
