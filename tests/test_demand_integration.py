"""End to end on real servers: simulate a few weeks -> Kafka -> run bounded -> Redis.

Redis must then hold a coherent forecast for every series at every level, including every
SKU x store of a SKU launched in the last week, plus scores readable by the report.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest
import redis

from processors.reconcile import LEVELS
from streams.flows.demand import DemandFlow, DemandSettings, demand_report
from streams.kafka_io import create_topics
from streams.produce import EventProducer
from streams.runner import run
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator

pytestmark = pytest.mark.integration


def _ordinal(ms: int) -> int:
    return date(1970, 1, 1).toordinal() + ms // 86_400_000


def test_simulate_run_bounded_coherent_forecasts_in_redis(settings: Settings):
    create_topics(settings.kafka, settings.topics)
    # seed 1 launches SKUs on 2024-11-30 and 2024-12-02, in the last week of the run
    cfg = SimulationConfig(
        seed=1,
        start_date=date(2024, 11, 11),
        days=24,
        skus=10,
        stores=3,
        customers=200,
        new_skus_per_week=2,
    )
    sim = Simulator(cfg)
    events = list(sim.events())
    EventProducer(settings).send_all(iter(events))
    run(
        settings,
        live=False,
        extensions=[DemandFlow(DemandSettings(horizon_days=14, scored_horizons=(1, 7, 14)))],
    )

    client = redis.Redis.from_url(settings.redis.require_url(), decode_responses=True)
    prefix = f"{settings.redis.key_prefix}:v1"
    stores = [s.store_id for s in sim.truth.world.stores]
    skus = sorted({e.value["sku"] for e in events if e.family == "catalog"})
    last_week = cfg.start_date.toordinal() + cfg.days - 7
    launched = [
        e.value["sku"]
        for e in events
        if e.family == "catalog"
        and e.value["launch_date"] == e.value["event_time"]
        and last_week <= _ordinal(e.event_time) < last_week + 6
    ]
    assert launched, "the simulation should launch a SKU in its last week"

    status = client.hgetall(f"{prefix}:demand_status:flow")
    assert status and int(status["days_closed"]) >= 20, (status, client.keys(f"{prefix}:*")[:20])
    bottom = []
    for sku in skus:
        for store in stores:
            h = client.hgetall(f"{prefix}:forecast:sku_store:{sku}:{store}")
            assert h, (sku, store, sorted(client.keys(f"{prefix}:forecast:sku_store:*"))[:30])
            mean = json.loads(h["mean"])
            assert len(mean) == 14 and min(mean) >= 0.0
            bottom.append(mean)
            for field in ("p10", "p50", "p90", "model_version", "as_of", "reorder_point"):
                assert field in h
    total = client.hgetall(f"{prefix}:forecast:total:all")
    np.testing.assert_allclose(np.sum(bottom, axis=0), json.loads(total["mean"]), atol=0.02)
    for level in LEVELS:
        assert client.keys(f"{prefix}:forecast:{level}:*"), level
    for sku in launched:
        assert all(client.exists(f"{prefix}:forecast:sku_store:{sku}:{s}") for s in stores)
        assert client.exists(f"{prefix}:forecast:sku:{sku}")
    report = demand_report(client, settings.redis.key_prefix)
    assert "total" in report and "MASE" in report
