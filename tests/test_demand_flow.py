"""The demand flow wired into the ingest dataflow, with Bytewax's TestingSource/TestingSink."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest

from processors.reconcile import LEVELS
from processors.records import Event
from processors.writes import HashWrite
from streams.flows.demand import DemandEngine, DemandFlow, DemandSettings
from streams.registry import ManifestResolver, SchemaCatalog
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator
from tests import helpers

RESOLVER = ManifestResolver(SchemaCatalog.load())
SETTINGS = Settings()
TOPICS = SETTINGS.topics.input_topics()
CFG = DemandSettings(horizon_days=7, scored_horizons=(1, 7))


@pytest.fixture(scope="module")
def sim_messages():
    sim = Simulator(
        SimulationConfig(
            seed=3,
            start_date=date(2024, 11, 18),
            days=21,
            skus=8,
            stores=2,
            customers=150,
            new_skus_per_week=1,
        )
    )
    return sim, helpers.sim_messages(sim.events())


def run(msgs, cfg=CFG):
    return helpers.run_testing_flow(msgs, [DemandFlow(cfg)])[2]


def latest(writes, kind):
    """What Redis would hold: per key, the fields of the newest version (the sink's rule)."""
    out: dict[str, tuple[int, dict]] = {}
    for w in writes:
        newer = isinstance(w, HashWrite) and w.version >= out.get(w.entity, (-1, {}))[0]
        if isinstance(w, HashWrite) and w.kind == kind and newer:
            out[w.entity] = (w.version, dict(w.fields))
    return {k: v[1] for k, v in out.items()}


def test_step_ids_are_prefixed_and_stable():
    ids = helpers.built_step_ids([DemandFlow(CFG)])
    assert {"demand_key", "demand_engine", "demand_publish", "demand_unkey"} <= ids


def test_forecasts_for_every_series_and_level_are_coherent(sim_messages):
    sim, msgs = sim_messages
    writes = run(msgs)
    fc = latest(writes, "forecast")
    skus = {e.value["sku"] for e in sim.events() if e.family == "catalog"}
    stores = {s.store_id for s in sim.truth.world.stores}
    for sku in skus:
        for store in stores:
            assert f"sku_store:{sku}:{store}" in fc
    assert {e.split(":")[0] for e in fc} == set(LEVELS)
    as_of = {f["as_of"] for f in fc.values()}
    assert len(as_of) == 1  # every series published for the same closed day
    bottom = np.array([json.loads(f["mean"]) for e, f in fc.items() if e.startswith("sku_store:")])
    total = np.array(json.loads(fc["total:all"]["mean"]))
    np.testing.assert_allclose(bottom.sum(axis=0), total, rtol=1e-3, atol=0.01)
    for f in fc.values():
        p10, p50, p90 = (np.array(json.loads(f[k])) for k in ("p10", "p50", "p90"))
        assert len(p50) == 7 and (p10 >= 0).all() and (p10 <= p50 + 1e-9).all()
        assert (p50 <= p90 + 1e-9).all()
    # the SKU launched during the run has a forecast from its hierarchy
    launched = [
        e.value["sku"]
        for e in sim.events()
        if e.family == "catalog" and e.value["launch_date"] == e.value["event_time"]
    ]
    assert launched and all(f"sku_store:{launched[-1]}:{s}" in fc for s in stores)
    scores = latest(writes, "demand_score")
    assert "total:h1" in scores and scores["total:h1"]["n"] > 0
    status = latest(writes, "demand_status")["flow"]
    assert status["days_closed"] >= 19 and status["bad_events"] == 0


def test_versions_are_monotonic_and_notifications_name_the_channel(sim_messages):
    _, msgs = sim_messages
    writes = [w for w in run(msgs[: len(msgs) // 2]) if isinstance(w, HashWrite)]
    seen: dict[str, int] = {}
    for w in writes:
        if w.kind == "forecast":
            assert w.channel == "forecast.changes"
            # never backwards; an equal version is a republication after new series were
            # added (same as-of: the sink rewrites it without a second notification)
            assert w.version >= seen.get(w.entity, -1)
            seen[w.entity] = w.version


def test_replay_gives_the_same_forecasts(sim_messages):
    _, msgs = sim_messages
    part = msgs[: len(msgs) // 3]
    a, b = latest(run(part), "forecast"), latest(run(part), "forecast")
    assert a == b


def _event(family: str, value: dict, t: int) -> Event:
    return Event(family, None, {**value, "event_time": t}, t, 1, family, 0, 0)


def test_engine_reorder_signal_and_bad_records():
    day = 86_400_000
    t0 = 20_000 * day
    eng = DemandEngine(CFG)
    eng.on_event(_event("stores", {"store_id": "S1", "region_id": "R1", "size_sqm": 900.0}, t0))
    catalog = {"event_type": "SKU_CREATED", "sku": "K1", "category_id": "C1",
               "department_id": "D1", "price": 5.0, "launch_date": None}  # fmt: skip
    eng.on_event(_event("catalog", catalog, t0))
    line = {"sku": "K1", "quantity": 3, "unit_price": 5.0, "discount": 0.0}
    for d in range(10):
        order = {"event_type": "ORDER_PLACED", "order_id": f"O{d}", "store_id": "S1",
                 "lines": [line]}  # fmt: skip
        eng.on_event(_event("orders", order, t0 + d * day + 12 * 3_600_000))
    assert eng.days_closed == 9
    inv = {"sku": "K1", "store_id": "S1", "on_hand": 0, "on_order": None}
    (low,) = eng.on_event(_event("inventory", inv, t0 + 9 * day))
    assert isinstance(low, HashWrite) and low.kind == "reorder" and low.entity == "K1:S1"
    assert low.fields["signal"] == 1 and low.channel == "reorder.signals"
    assert low.fields["reorder_point"] > low.fields["safety_stock"] > 0
    (high,) = eng.on_event(_event("inventory", {**inv, "on_hand": 10_000}, t0 + 9 * day))
    assert high.fields["signal"] == 0 and high.channel is None
    assert eng.on_event(_event("orders", {"event_type": "ORDER_PLACED"}, t0)) == []
    assert eng.bad_events == 1
