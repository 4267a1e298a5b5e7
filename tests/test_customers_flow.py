"""The customer flow on Bytewax's TestingSource: scores, collapsing, replay, eviction, alerts."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from processors.customer_profile import DAY_MS, unpack
from processors.records import Event
from processors.writes import HashWrite, ZSetWrite
from streams.flows.customers import CustomerBook, CustomerFlow, CustomerSettings
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator
from tests.helpers import T0, click, order

FAMILIES = ("orders", "clickstream", "catalog")


@pytest.fixture(scope="module")
def sim_events() -> list[Event]:
    sim = Simulator(
        SimulationConfig(
            seed=5, start_date=date(2024, 3, 1), days=45, skus=15, stores=2, customers=80
        )
    )
    return [
        Event(e.family, e.key, e.value, e.event_time, 0, e.family, 0, i)
        for i, e in enumerate(sim.events())
        if e.family in FAMILIES
    ]


def run_flow(events: list[Event], cfg: CustomerSettings, batch: int) -> list[Any]:
    flow = Dataflow("test_customers")
    stream = op.input("in", flow, TestingSource(events, batch_size=batch))
    out: list[Any] = []
    op.output("out", CustomerFlow(cfg).build(stream, Settings()), TestingSink(out))
    run_main(flow)
    return out


def final_state(writes: list[Any]) -> dict[tuple[str, str, str], Any]:
    """What Redis would hold: newest hash version per key, last zset score per member."""
    state: dict[tuple[str, str, str], Any] = {}
    for w in writes:
        if isinstance(w, HashWrite):
            key = (w.kind, w.entity, "")
            if key not in state or w.version >= state[key].version:
                state[key] = w
        elif isinstance(w, ZSetWrite):
            state[(w.kind, w.entity, w.member)] = w.score
    return state


def ev(family: str, value: dict[str, Any], offset: int = 0) -> Event:
    return Event(family, None, value, value["event_time"], 0, family, 0, offset)


def test_every_buyer_gets_a_score_and_writes_are_collapsed(sim_events: list[Event]):
    writes = run_flow(sim_events, CustomerSettings(), batch=500)
    state = final_state(writes)
    buyers = {
        e.value["customer_id"]
        for e in sim_events
        if e.family == "orders"
        and e.value["event_type"] == "ORDER_PLACED"
        and e.value["customer_id"]
    }
    assert buyers
    for c in buyers:
        fields = state[("customer", c, "")].fields
        assert 0.0 <= fields["churn_risk"] <= 1.0 and 0.0 <= fields["p_alive"] <= 1.0
        assert fields["clv_365d"] >= 0 and fields["expected_purchases_90d"] >= 0
        assert state[("churn", "value_at_risk", c)] == pytest.approx(
            fields["churn_risk"] * fields["clv_365d"], abs=0.01
        )
    assert len(writes) < len(sim_events)  # not one write per event
    versions: dict[str, int] = {}
    for w in writes:  # per customer, versions (event time) never go backwards
        if isinstance(w, HashWrite) and w.kind == "customer":
            assert w.version >= versions.get(w.entity, 0)
            versions[w.entity] = w.version
    assert ("churn", "state", "") in state


def test_replay_with_other_batches_leaves_the_same_state(sim_events: list[Event]):
    cfg = CustomerSettings()
    first = final_state(run_flow(sim_events, cfg, batch=500))
    second = final_state(run_flow(sim_events, cfg, batch=37))
    assert first == second


def test_eviction_then_restore_gives_the_same_profiles_and_scores(sim_events: list[Event]):
    keep = CustomerBook(CustomerSettings(evict_idle_days=10_000))
    evict = CustomerBook(CustomerSettings(evict_idle_days=3))
    for e in sim_events:
        assert keep.process(e) == evict.process(e)
    assert evict.evictions > 0 and evict.restores > 0 and keep.evictions == 0
    profiles = {**evict.hot, **{c: unpack(b) for c, b in evict.cold.items()}}
    assert profiles == keep.hot
    assert evict.churn.classifier.weights == keep.churn.classifier.weights


def test_anonymous_sessions_attach_to_the_customer_who_logs_in():
    book = CustomerBook(CustomerSettings())
    book.process(ev("clickstream", click(session_id="s1", anonymous_id="D1", event_time=T0)))
    book.process(ev("clickstream", click(session_id="s2", anonymous_id="D1", event_time=T0 + 9)))
    assert "C1" not in book.hot  # nobody known yet
    login = click(event_type="LOGIN", session_id="s2", anonymous_id="D1", customer_id="C1")
    scores = book.process(ev("clickstream", {**login, "event_time": T0 + 20, "sku": None}))
    p = book.hot["C1"]
    assert (p.sessions, p.product_views) == (2, 2)
    assert [s.customer for s in scores] == ["C1"]  # a cold-start score from the first event
    # later anonymous browsing on the same device is the customer's too
    book.process(ev("clickstream", click(session_id="s3", anonymous_id="D1", event_time=T0 + 99)))
    assert p.sessions == 3 and p.product_views == 3


def test_a_bad_record_is_counted_and_skipped():
    book = CustomerBook(CustomerSettings())
    bad = ev("orders", {**order(customer_id="C9"), "lines": [{"quantity": "x"}]})
    assert book.process(bad) == []
    assert book.errors == 1
    assert book.process(ev("orders", order(customer_id="C9", event_time=T0 + 5)))


def test_an_alert_fires_when_a_valuable_customer_crosses_the_threshold():
    cfg = dataclasses.replace(
        CustomerSettings(), risk_threshold=0.5, alert_min_clv=0.0, churn_warmup=10**9
    )
    events = []
    for d in range(0, 60, 3):  # a regular, then silence
        events.append(
            ev("orders", order(order_id=f"A{d}", customer_id="C1", event_time=T0 + d * DAY_MS))
        )
    for d in range(0, 200):  # someone else keeps event time moving
        events.append(
            ev("orders", order(order_id=f"B{d}", customer_id="C2", event_time=T0 + d * DAY_MS + 1))
        )
    events.sort(key=lambda e: e.event_time)
    writes = run_flow(events, cfg, batch=50)
    alerts = [w for w in writes if isinstance(w, HashWrite) and w.channel == "churn.alerts"]
    assert [a.entity for a in alerts] == ["C1"]
    assert alerts[0].kind == "churn_alert" and alerts[0].fields["churn_risk"] >= 0.5
