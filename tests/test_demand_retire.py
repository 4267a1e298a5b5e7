"""Retiring dead series (issue 7): discontinued and silent series leave the demand state,
parents stay coherent, a retired series that sells again comes back as a cold start, and a
recovered (pickled) engine retires exactly what an uninterrupted one does. Idle SKU x store
pairs leave the supply flow's cover state the same way. Budget: under 3 CPU s in all."""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import Any

import numpy as np

from processors.daily_demand import DAY_MS
from processors.demand_engine import DemandEngine, DemandSettings
from processors.reconcile import LEVELS
from processors.records import Event
from processors.supply_engine import SupplyEngine, SupplySettings
from processors.supply_impact import Cover, StoreMoves
from processors.writes import HashWrite, RedisWrite
from streams.flows.supply import _CoverLogic

D0 = 20_000  # an epoch day
RETIRE = 14
CFG = DemandSettings(horizon_days=7, scored_horizons=(1, 7), retire_after_days=RETIRE)
SKUS = {"K1": "C1", "K2": "C1", "K3": "C2"}
STORES = ("S1", "S2")
STOP, BACK = 10, 40  # K3 is discontinued and stops selling on day STOP, sells again on BACK


def _event(family: str, t: int, value: dict[str, Any], n: int) -> Event:
    return Event(family, None, {**value, "event_time": t}, t, 0, family, 0, n)


def _catalog(sku: str, kind: str, t: int, n: int) -> Event:
    value = {"sku": sku, "event_type": kind, "price": 5.0, "category_id": SKUS[sku],
             "department_id": "D1", "launch_date": D0 * DAY_MS}  # fmt: skip
    return _event("catalog", t, value, n)


def _order(sku: str, store: str, qty: int, t: int, n: int) -> Event:
    line = {"sku": sku, "quantity": qty, "unit_price": 5.0, "discount": 0.0}
    value = {"event_type": "ORDER_PLACED", "order_id": f"O{n}", "store_id": store,
             "lines": [line]}  # fmt: skip
    return _event("orders", t, value, n)


def events(days: int) -> list[Event]:
    """Two stores, three SKUs; K3 stops on day STOP (discontinued) and sells once on BACK."""
    t0 = D0 * DAY_MS
    out = [_event("stores", t0, {"store_id": s, "region_id": "R1", "size_sqm": 100.0}, i)
           for i, s in enumerate(STORES)]  # fmt: skip
    out += [_catalog(k, "SKU_CREATED", t0, 10 + i) for i, k in enumerate(SKUS)]
    for d in range(days):
        t = t0 + d * DAY_MS + 12 * 3_600_000
        if d == STOP:
            out.append(_catalog("K3", "SKU_DISCONTINUED", t - 1, len(out)))
            out.append(_catalog("K3", "PRICE_CHANGED", t, len(out)))  # clearance: stays gone
        for store in STORES:
            for sku in SKUS:
                if sku != "K3" or d < STOP or (d == BACK and store == "S1"):
                    out.append(_order(sku, store, 1 + (d + len(out)) % 3, t, len(out)))
    return out


def run(engine: DemandEngine, evs: list[Event]) -> list[RedisWrite]:
    writes: list[RedisWrite] = []
    for e in evs:
        writes.extend(engine.on_event(e))
    return writes


def test_a_discontinued_silent_series_is_retired_coherently_and_comes_back_cold():
    evs = events(BACK + 3)
    cut = next(i for i, e in enumerate(evs) if e.event_time >= (D0 + STOP + RETIRE + 2) * DAY_MS)
    eng, kept = DemandEngine(CFG), DemandEngine(replace(CFG, retire_after_days=0))
    run(kept, evs[:cut])
    writes = run(eng, evs[:cut])

    # Retired: both K3 series, their SKU node and the category only K3 had.
    assert len(eng.tree) == len(eng.fc) == len(eng.last_sold) == 4 and eng.retired == 2
    assert "K3" not in eng.tree.nodes["sku"] and "C2" not in eng.tree.nodes["category"]
    assert len(pickle.dumps(eng)) < len(pickle.dumps(kept)) and len(kept.tree) == 6
    day = eng.last_closed[0] if eng.last_closed else 0
    out = eng.forecasts(day)
    assert eng.tree.is_coherent({lv: out[lv][0] for lv in LEVELS})
    for by_level in eng.history.values():  # history follows the new node numbering
        for level, arr in by_level.items():
            assert len(arr) <= len(eng.tree.nodes[level])
    # The last publication has no K3 key; live keys carry the TTL that retires the rest.
    last = [w for w in writes if isinstance(w, HashWrite) and w.kind == "forecast"
            and w.version == eng.last_closed[1]]  # type: ignore[index]  # fmt: skip
    assert {w.entity for w in last if w.entity.startswith("sku:")} == {"sku:K1", "sku:K2"}
    assert all(w.ttl_ms == 60 * DAY_MS for w in last)
    inv = {"sku": "K3", "store_id": "S1", "on_hand": 3, "on_order": 0}
    assert eng.on_event(_event("inventory", evs[cut].event_time, inv, 0)) == []

    run(eng, evs[cut:])  # K3 sells again at S1: a new series with a cold-start prior
    i = eng.tree.index[("K3", "S1")]
    assert len(eng.tree) == 5 and ("K3", "S2") not in eng.tree.index
    assert eng.fc.days[i] <= CFG.prior_days + 2  # history restarted, not carried over
    assert eng.tree.is_coherent({lv: v[0] for lv, v in eng.forecasts(D0 + BACK + 1).items()})


def test_a_recovered_engine_retires_like_an_uninterrupted_one():
    evs = events(STOP + RETIRE + 6)
    live = DemandEngine(CFG)
    straight = run(live, evs)
    half = DemandEngine(CFG)
    first = run(half, evs[: len(evs) // 2])
    resumed: DemandEngine = pickle.loads(pickle.dumps(half))
    assert first + run(resumed, evs[len(evs) // 2 :]) == straight
    assert resumed.retired == live.retired == 2
    assert resumed.tree.nodes == live.tree.nodes
    assert np.array_equal(resumed.fc.level, live.fc.level)


def test_idle_cover_trackers_and_engine_covers_are_dropped():
    t0 = D0 * DAY_MS
    logic = _CoverLogic(0.1, None, idle_days=7)

    def moves(*ms: tuple[str, str, int, int]) -> StoreMoves:
        return StoreMoves("S1", list(ms))

    logic.on_batch([moves(("snap", "OLD", 5, t0), ("snap", "LIVE", 5, t0))])
    logic.on_batch([moves(("sale", "LIVE", 1, t0 + d * DAY_MS)) for d in range(1, 8)])
    assert set(logic.stores["S1"].trackers) == {"OLD", "LIVE"}  # 7 days idle: not yet
    logic.on_batch([moves(("sale", "LIVE", 1, t0 + 8 * DAY_MS))])
    assert set(logic.stores["S1"].trackers) == {"LIVE"}
    restored = _CoverLogic(0.1, logic.snapshot(), idle_days=7)
    assert restored.stores["S1"].newest == D0 + 8
    assert set(restored.stores["S1"].trackers) == {"LIVE"}

    eng = SupplyEngine(SupplySettings(cover_idle_days=7))
    eng.on_cover("OLD", "S1", Cover(5, 1.0, 5.0, t0))
    eng.on_cover("LIVE", "S1", Cover(5, 1.0, 5.0, t0 + 5 * DAY_MS))
    value = {"event_id": "e1", "event_type": "PO_CREATED", "supplier_id": "SUP1", "po_id": "P1",
             "sku": "LIVE", "store_id": "S1", "quantity_ordered": 3, "quantity": None,
             "shipment_id": None, "expected_date": t0 + 20 * DAY_MS, "actual_date": None,
             "delay_days": None, "severity": None, "reason": None}  # fmt: skip
    eng.on_supplier(value, t0 + 9 * DAY_MS)
    assert set(eng.covers) == {("LIVE", "S1")}
