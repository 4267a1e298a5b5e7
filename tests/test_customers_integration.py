"""End to end on real servers: simulate -> Kafka -> run bounded -> a churn score per customer.

Every customer who bought or logged in must have a score hash in Redis, and the top-risk
sorted set must rank them by value at risk (churn risk x 365-day value).
"""

from __future__ import annotations

from datetime import date

import pytest
import redis

from streams.flows.customers import CustomerFlow, churn_report
from streams.kafka_io import create_topics
from streams.produce import EventProducer
from streams.runner import run
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator

pytestmark = pytest.mark.integration


def test_simulate_run_bounded_every_customer_scored_and_ranked(settings: Settings):
    create_topics(settings.kafka, settings.topics)
    sim = Simulator(
        SimulationConfig(
            seed=4, start_date=date(2024, 5, 1), days=21, skus=10, stores=2, customers=60
        )
    )
    events = list(sim.events())
    EventProducer(settings).send_all(events)
    active = {
        e.value["customer_id"]
        for e in events
        if e.family in ("orders", "clickstream") and e.value.get("customer_id")
    }
    assert len(active) > 20

    run(settings, live=False, extensions=[CustomerFlow()])

    prefix = settings.redis.key_prefix
    client = redis.Redis.from_url(settings.redis.require_url(), decode_responses=True)
    try:
        pipe = client.pipeline()
        for c in sorted(active):
            pipe.hgetall(f"{prefix}:v1:customer:{c}")
        hashes = dict(zip(sorted(active), pipe.execute(), strict=True))
        for c, h in hashes.items():
            assert h, f"{c} has no score"
            assert 0.0 <= float(h["churn_risk"]) <= 1.0
            assert float(h["clv_365d"]) >= 0 and int(h["as_of"]) > 0
        ranked = client.zrevrange(f"{prefix}:v1:churn:value_at_risk", 0, -1, withscores=True)
        assert {c for c, _ in ranked} == active
        scores = [s for _, s in ranked]
        assert scores == sorted(scores, reverse=True)
        for c, s in ranked:
            assert s == pytest.approx(float(hashes[c]["value_at_risk"]), abs=0.01)
        assert client.hget(f"{prefix}:v1:churn:state", "errors") == "0"
        report = churn_report(redis.Redis.from_url(settings.redis.require_url()), prefix)
        assert report.startswith("churn")
    finally:
        client.close()
