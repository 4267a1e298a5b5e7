"""End to end on real servers: simulate one disruption -> Kafka -> run bounded -> Redis.

Exactly one alert (one alert id) must be in the capped Redis stream, naming the disrupted
supplier, with supplier risk and lead-time hashes beside it; a second bounded run over
the same topics adds nothing (idempotent writes), and the report reads the scores.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from processors.purchase_orders import DAY_MS
from streams.flows.supply import SupplyFlow, SupplySettings, supply_report
from streams.kafka_io import create_topics
from streams.produce import EventProducer
from streams.runner import run
from streams.settings import Settings
from streams.simulator import Simulator
from streams.simulator.events import day_ms
from tests.test_supply_flow import CONFIG  # the flow test's world: SUP001 disrupted days 48-57

pytestmark = pytest.mark.integration


def _entries(client: redis.Redis, key: str) -> list[tuple[str, dict[str, str]]]:
    raw: Any = client.xrange(key)
    return [(i.decode(), {k.decode(): v.decode() for k, v in f.items()}) for i, f in raw]


def test_one_disruption_one_alert_in_the_stream(settings: Settings):
    create_topics(settings.kafka, settings.topics)
    sim = Simulator(CONFIG)
    produced = EventProducer(settings).send_all(sim.events())
    assert produced["supplier"] > 500
    episode = sim.truth.supply.disruptions[0]

    flow = SupplyFlow(SupplySettings())
    run(settings, live=False, extensions=[flow])

    prefix = settings.redis.key_prefix
    client = redis.Redis.from_url(settings.redis.require_url())
    try:
        stream = f"{prefix}:v1:alerts:supply"
        entries = _entries(client, stream)
        assert entries, "an alert was raised"
        assert {f["alert_id"] for _, f in entries} == {entries[0][1]["alert_id"]}
        first = entries[0][1]
        assert first["status"] == "open" and first["supplier_id"] == episode.supplier_id
        start = day_ms(CONFIG.start_date) + episode.start_day * DAY_MS
        assert start <= int(first["opened_at"]) <= start + 21 * DAY_MS
        assert json.loads(first["affected_skus"])

        risk = client.hgetall(f"{prefix}:v1:supplier:{episode.supplier_id}")
        assert risk and float(risk[b"lead_mean_days"]) > 0
        assert client.keys(f"{prefix}:v1:leadtime:{episode.supplier_id}:*")

        # A second bounded run over the same topics: nothing new in the stream.
        run(settings, live=False, extensions=[SupplyFlow(SupplySettings())])
        assert _entries(client, stream) == entries

        client.set(
            f"{prefix}:v1:supply_truth:episodes",
            json.dumps(
                [{"supplier_id": episode.supplier_id, "start": start,
                  "end": start + (episode.end_day - episode.start_day + 1) * DAY_MS}]
            ),
        )  # fmt: skip
        text = supply_report(client, prefix)
        assert "lead time:" in text and "recall 1.0" in text
    finally:
        client.close()
