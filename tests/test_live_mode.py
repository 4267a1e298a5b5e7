"""Live mode: `retailpulse run --live` tails the topics, and ends with the same Redis state
a bounded replay of the same events gives (results depend on event time only)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date

import pytest
import redis

from infra.processes import stop_popen
from streams.kafka_io import create_topics
from streams.metrics import ingest_snapshot
from streams.produce import EventProducer
from streams.runner import run
from streams.settings import Settings, load_settings
from streams.simulator import SimulationConfig, Simulator

pytestmark = pytest.mark.integration


def _settings(kafka_bootstrap: str, redis_url: str, prefix: str, topics: str) -> Settings:
    return load_settings(
        env={},
        overrides={
            "kafka": {"bootstrap_servers": kafka_bootstrap},
            "redis": {"url": redis_url, "key_prefix": prefix},
            "topics": {"prefix": f"{topics}.", "dead_letter": f"{topics}.dlq", "partitions": 2},
        },
        use_embedded=False,
    )


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError("timed out waiting for the live flow")


def test_live_run_tails_and_matches_a_bounded_replay(kafka_bootstrap, redis_url, key_prefix):
    topics = f"live{uuid.uuid4().hex[:6]}"
    live = _settings(kafka_bootstrap, redis_url, f"{key_prefix}live", topics)
    create_topics(live.kafka, live.topics)
    days = list(
        Simulator(
            SimulationConfig(
                seed=5, start_date=date(2024, 12, 1), days=6, skus=15, stores=2, customers=100
            )
        ).days()
    )
    producer = EventProducer(live)
    first = producer.send_all(e for _, events in days[:3] for e in events)

    env = {
        **os.environ,
        "RETAILPULSE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RETAILPULSE_REDIS_URL": redis_url,
        "RETAILPULSE_REDIS_KEY_PREFIX": f"{key_prefix}live",
        "RETAILPULSE_TOPICS_PREFIX": f"{topics}.",
        "RETAILPULSE_TOPICS_DEAD_LETTER": f"{topics}.dlq",
        "RETAILPULSE_RUN_EPOCH_INTERVAL_S": "0.2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "run", "--live"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    client = redis.Redis.from_url(redis_url)
    try:

        def total() -> int:
            return sum(s["events"] for s in ingest_snapshot(client, f"{key_prefix}live").values())

        _wait_for(lambda: total() == sum(first.values()))
        # Still running: events produced now are picked up without a restart.
        assert proc.poll() is None
        everything = producer.send_all(e for _, events in days[3:] for e in events)
        _wait_for(lambda: total() == sum(everything.values()))
    finally:
        stop_popen(proc, 20, signal.SIGINT)
    live_state = ingest_snapshot(client, f"{key_prefix}live")

    bounded = dataclasses.replace(
        live, redis=dataclasses.replace(live.redis, key_prefix=f"{key_prefix}replay")
    )
    run(bounded, live=False, extensions=[])
    replay_state = ingest_snapshot(client, f"{key_prefix}replay")
    client.close()
    assert live_state == replay_state
