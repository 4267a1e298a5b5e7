"""Processing errors and duplicates become dead letters; the Redis sink rewrites lost data.

Fast tests on Bytewax's TestingSource/TestingSink (plus two on the session Redis and Kafka).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from infra.redis_sink import RedisWriter, redis_key
from processors.records import DeadLetter, Event
from processors.writes import HashWrite, StreamAdd, ZSetWrite
from streams.dataflow import EXTENSION_STEP_IDS, STEP_IDS, wait_for_topics
from streams.decode import BatchDecoder, EventDeadLetters
from streams.errors import ConfigError, DeliveryError
from streams.flows import default_extensions
from streams.flows.customers import CustomerFlow
from streams.flows.demand import DemandFlow
from streams.flows.supply import SupplyFlow
from streams.registry import ManifestResolver, SchemaCatalog
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator
from tests.helpers import built_step_ids, redis_state, run_testing_flow, sim_messages

SETTINGS = Settings()
RESOLVER = ManifestResolver(SchemaCatalog.load())
TOPICS = SETTINGS.topics.input_topics()
FAMILIES = {topic: family for family, topic in TOPICS.items()}


@pytest.fixture(scope="module")
def sim_events() -> list[Any]:
    config = SimulationConfig(
        seed=7, start_date=date(2024, 11, 1), days=8, skus=6, stores=2, customers=40
    )
    return list(Simulator(config).events())


def _decode(messages: list[Any]) -> list[Event | DeadLetter]:
    return BatchDecoder(FAMILIES, RESOLVER, SETTINGS.validation)(messages)


def test_reencoding_an_event_gives_back_its_original_bytes(sim_events):
    messages = sim_messages(sim_events)
    letters = EventDeadLetters("process:test", SETTINGS)
    decoded = _decode(messages)
    assert len(decoded) == len(messages) and all(isinstance(e, Event) for e in decoded)
    families = set()
    for msg, event in zip(messages, decoded, strict=True):
        assert isinstance(event, Event)
        value, schema_id = letters.encode(event)
        assert (value, schema_id) == (msg.value, event.schema_id), event.family
        families.add(event.family)
    assert families == set(TOPICS)  # every family checked


def _fails_on(event_ids: set[str]):
    def fault(e: Event) -> None:
        if e.value["event_id"] in event_ids:
            raise RuntimeError(f"injected model failure on {e.value['event_id']}")

    return fault


def test_a_model_that_raises_sends_the_event_to_dead_letters_and_goes_on(sim_events):
    messages = sim_messages(sim_events)
    decoded = [e for e in _decode(messages) if isinstance(e, Event)]
    pick = {  # one poisoned event per flow, each followed by good ones of its family
        "demand": next(e for e in decoded if e.family == "orders"),
        "customers": next(e for e in decoded if e.family == "clickstream"),
        "supply": next(e for e in decoded if e.family == "supplier"),
    }
    ids = {name: e.value["event_id"] for name, e in pick.items()}
    demand = DemandFlow(fault=_fails_on({ids["demand"]}))
    flows = [
        demand,
        SupplyFlow(forecasts=demand, fault=_fails_on({ids["supply"]})),
        CustomerFlow(fault=_fails_on({ids["customers"]})),
    ]
    events, dead, writes = run_testing_flow(messages, flows)
    assert len(events) == len(messages)  # ingest saw every record
    by_stage = {d.stage: d for d in dead}
    assert sorted(by_stage) == ["process:customers", "process:demand", "process:supply"]
    assert len(dead) == 3, "one dead letter each, no replay loop"
    for name, event in pick.items():
        d = by_stage[f"process:{name}"]
        msg = messages[decoded.index(event)]
        assert (d.source.topic, d.source.partition, d.source.offset) == (
            msg.topic,
            msg.partition,
            msg.offset,
        )
        assert d.source.value == msg.value, "re-encoded bytes equal the original"
        assert d.error_class == "RuntimeError" and "injected" in d.message
        assert d.schema_id == event.schema_id
        assert dict(d.headers())["rp.dlq.stage"] == f"process:{name}".encode()
    # The flows went on: the engines' error counters say one each, and later events wrote.
    churn_state = [w for w in writes if isinstance(w, HashWrite) and w.kind == "churn"]
    assert churn_state and int(churn_state[-1].fields.get("errors", 1)) >= 1
    assert any(isinstance(w, HashWrite) and w.kind == "forecast" for w in writes)


def test_an_event_produced_twice_is_counted_once(sim_events):
    messages = sim_messages(sim_events, families={"orders", "catalog", "stores"})
    orders = [i for i, m in enumerate(messages) if m.topic == TOPICS["orders"]]
    first = messages[orders[0]]
    offsets = {m.topic: m.offset for m in messages}
    again = type(first)(
        key=first.key,
        value=first.value,
        topic=first.topic,
        headers=[],
        latency=None,
        offset=offsets[first.topic] + 1,
        partition=first.partition,
        timestamp=first.timestamp,
    )
    _, dead_once, writes_once = run_testing_flow(messages, default_extensions(SETTINGS))
    with_dup = [*messages[: orders[3]], again, *messages[orders[3] :]]
    events, dead, writes = run_testing_flow(with_dup, default_extensions(SETTINGS))
    assert dead_once == []
    assert [(d.stage, d.error_class, d.source.offset) for d in dead] == [
        ("dedup", "DuplicateEvent", again.offset)
    ]
    assert dead[0].source.value == first.value
    assert len(events) == len(with_dup)  # the ingest counters count records
    model = [
        w for w in writes if not (isinstance(w, HashWrite) and w.kind in ("ingest", "offsets"))
    ]
    model_once = [
        w for w in writes_once if not (isinstance(w, HashWrite) and w.kind in ("ingest", "offsets"))
    ]
    assert model == model_once, "the models saw the order once"


def test_new_step_ids_are_pinned():
    """Renaming a step discards its recovery state: change these only with a migration."""
    ids = built_step_ids(default_extensions(SETTINGS))
    assert set(STEP_IDS) | set(EXTENSION_STEP_IDS) <= ids
    assert {
        "demand_split_errors",
        "demand_split_blocks",
        "demand_block_key",
        "demand_publish",
        "demand_unkey",
        "demand_rendered",
        "demand_writes",
        "demand_errors",
        "customers_split_errors",
        "customers_writes",
        "customers_errors",
        "supply_split_errors",
        "supply_writes",
        "supply_errors",
    } <= ids


# -- the Redis sink after Redis lost its data --------------------------------------------


@pytest.mark.integration
def test_the_sink_rewrites_what_an_emptied_redis_lost(redis_url, redis_client, key_prefix):
    writer = RedisWriter(redis_url, prefix=key_prefix)
    batches = [
        [
            HashWrite("ingest", "orders", {"events": 5, "dead_letters": 0}, version=5),
            HashWrite("customer", "C1", {"risk": 0.2}, version=10, ttl_ms=600_000),
            ZSetWrite("churn", "risk", "C1", 0.2),
            StreamAdd("alerts", "supply", {"alert_id": "a1"}, ms=1000, channel="alerts.supply"),
        ],
        [
            HashWrite("ingest", "orders", {"events": 9}, version=9),
            HashWrite("customer", "C2", {"risk": 0.7}, version=11),
            ZSetWrite("churn", "risk", "C2", 0.7),
            StreamAdd("alerts", "supply", {"alert_id": "a2"}, ms=2000),
        ],
    ]
    for batch in batches:
        writer.write(batch)
    before = redis_state(redis_client, key_prefix)
    assert before[":v1:ingest:orders"]["dead_letters"] == "0"  # redis_state strips the prefix
    # Redis comes back empty (as a restarted server without persistence would).
    for key in redis_client.scan_iter(match=f"{key_prefix}:*"):
        redis_client.delete(key)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(f"{key_prefix}:v1:alerts.supply")
    pubsub.get_message(timeout=1)
    later = [StreamAdd("alerts", "supply", {"alert_id": "a3"}, ms=3000, channel="alerts.supply")]
    writer.write(later)
    after = redis_state(redis_client, key_prefix)
    stream = ":v1:alerts:supply"
    assert [e[0] for e in after.pop(stream)] == ["1000-0", "2000-0", "3000-0"]
    before.pop(stream)
    assert after == before and writer.restores == 1
    assert 0 < redis_client.pttl(redis_key(key_prefix, "customer", "C1")) <= 600_000
    published = []
    while (m := pubsub.get_message(timeout=0.3)) is not None:
        published.append(m["data"])
    pubsub.close()
    assert len(published) == 1 and "a3" in published[0], "old alerts are not re-announced"
    writer.close()

    # Without a mirror, a loss stops the flow loudly instead.
    bare = RedisWriter(redis_url, prefix=f"{key_prefix}b", mirror=False)
    bare.write([HashWrite("ingest", "orders", {"events": 1}, version=1)])
    bare.write([HashWrite("ingest", "orders", {"events": 2}, version=2)])
    redis_client.delete(bare.marker)
    with pytest.raises(DeliveryError, match="replay"):
        bare.write([HashWrite("ingest", "orders", {"events": 3}, version=3)])
    bare.close()


@pytest.mark.integration
def test_missing_topics_are_waited_for_then_refused(kafka_bootstrap):
    kafka = Settings().kafka.__class__(bootstrap_servers=kafka_bootstrap)
    with pytest.raises(ConfigError, match="topics create"):
        wait_for_topics(kafka, ["rp-no-such-topic-x1"], missing_grace_s=1.0)
