"""The simulated retailer: determinism, schema fit, and the behaviour the models rely on."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import io
import json
import math
from collections import Counter, defaultdict
from datetime import date, timedelta

import fastavro
import fastavro.validation
import numpy as np
import pandas as pd
import pytest

from processors.validation import ValidationLimits, validate
from streams.registry import ManifestResolver, SchemaCatalog
from streams.serde import AvroDeserializer, AvroSerializer, strip_logical_types
from streams.simulator import SimEvent, SimulationConfig, Simulator, write_ground_truth
from streams.simulator.events import DAY_MS, FAMILIES, day_ms

SMALL = SimulationConfig(seed=11, days=60, skus=30, customers=300)
START_MS = day_ms(SMALL.start_date)
END_MS = day_ms(SMALL.end_date)


@pytest.fixture(scope="module")
def run() -> tuple[Simulator, list[SimEvent]]:
    sim = Simulator(SMALL)
    return sim, list(sim.events())


@pytest.fixture(scope="module")
def events(run: tuple[Simulator, list[SimEvent]]) -> list[SimEvent]:
    return run[1]


@pytest.fixture(scope="module")
def demand(run: tuple[Simulator, list[SimEvent]]) -> pd.DataFrame:
    return run[0].truth.demand_frame()


def of(events: list[SimEvent], family: str, event_type: str | None = None) -> list[dict]:
    return [
        e.value
        for e in events
        if e.family == family and (event_type is None or e.value.get("event_type") == event_type)
    ]


def day_of(ms: int) -> date:
    return date(1970, 1, 1) + timedelta(days=ms // DAY_MS)


# -- determinism and shape ----------------------------------------------------------------


def test_same_seed_same_events_other_seed_other_events(events: list[SimEvent]):
    again = list(Simulator(SMALL).events())
    assert again == events
    other = list(Simulator(dataclasses.replace(SMALL, seed=12)).events())
    assert [e.value for e in other[:2000]] != [e.value for e in events[:2000]]


def test_days_restart_and_continue_days_is_deterministic():
    cfg = SimulationConfig(seed=5, days=10, skus=15, stores=3, customers=100)
    sim = Simulator(cfg)
    backfill = [(d, [e.event_time for e in evs]) for d, evs in sim.days()]
    assert [d for d, _ in backfill] == [cfg.start_date + timedelta(days=i) for i in range(10)]
    extra = [evs for _, evs in sim.continue_days(5)]
    assert len(sim.truth.days) == 15
    again = Simulator(cfg)
    assert [(d, [e.event_time for e in evs]) for d, evs in again.days()] == backfill
    assert [evs for _, evs in again.continue_days(5)] == extra
    # Shipments ordered during the backfill arrive in the continuation.
    assert any(
        e.value["event_type"] == "SHIPMENT_RECEIVED"
        for evs in extra
        for e in evs
        if e.family == "supplier"
    )


def test_every_family_present_and_ids_unique(events: list[SimEvent]):
    counts = Counter(e.family for e in events)
    assert set(counts) == set(FAMILIES)
    ids = [e.value["event_id"] for e in events]
    assert len(ids) == len(set(ids))


def test_every_event_fits_its_schema_and_round_trips(events: list[SimEvent]):
    catalog = SchemaCatalog.load()
    parsed = {f: fastavro.parse_schema(dict(catalog.latest(f).schema)) for f in FAMILIES}
    names = {f: [x["name"] for x in catalog.latest(f).schema["fields"]] for f in FAMILIES}
    limits = ValidationLimits()
    for e in events:
        assert list(e.value) == names[e.family]  # every field present, schema order
        assert e.event_time == e.value["event_time"]
        fastavro.validation.validate(e.value, parsed[e.family], raise_errors=True)
        validate(e.family, e.value, broker_time_ms=e.event_time, limits=limits)
    # Read back without logical types (as streams.serde does) so times stay epoch-ms ints.
    plain = {
        f: fastavro.parse_schema(strip_logical_types(dict(catalog.latest(f).schema)))
        for f in FAMILIES
    }
    resolver = ManifestResolver(catalog)
    codecs = {f: (AvroSerializer(resolver, f), AvroDeserializer(resolver, f)) for f in FAMILIES}
    for i, e in enumerate(events):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed[e.family], e.value)
        buf.seek(0)
        assert fastavro.schemaless_reader(buf, plain[e.family], None) == e.value
        if i % 7 == 0:  # and through our own wire format
            encode, decode = codecs[e.family]
            assert decode(encode(e.value))[0] == e.value


def test_keys_follow_the_topic_convention(events: list[SimEvent]):
    key_field = {
        "clickstream": "anonymous_id",
        "orders": "store_id",
        "supplier": "supplier_id",
        "catalog": "sku",
        "inventory": "store_id",
        "stores": "store_id",
    }
    assert all(e.key == e.value[key_field[e.family]] for e in events)


def test_event_time_order_and_period(events: list[SimEvent]):
    times = [e.event_time for e in events]
    assert times == sorted(times)
    assert times[0] == START_MS and times[-1] < END_MS
    opening = [e.family for e in events[: SMALL.stores + SMALL.skus]]
    assert opening == ["stores"] * SMALL.stores + ["catalog"] * SMALL.skus


def test_days_groups_events_by_their_day():
    sim = Simulator(SimulationConfig(seed=2, days=5, skus=10, stores=2, customers=50))
    for d, evs in sim.days():
        assert {day_of(e.event_time) for e in evs} <= {d}


# -- demand -------------------------------------------------------------------------------


def daily_expected(demand: pd.DataFrame) -> pd.Series:
    return demand.groupby("date")["expected_units"].sum()


def test_black_friday_and_christmas_week_lift_expected_demand(demand: pd.DataFrame):
    total = daily_expected(demand)
    black_friday = total[pd.Timestamp("2024-11-29")]
    normal_friday = total[[pd.Timestamp("2024-11-08"), pd.Timestamp("2024-11-15")]].mean()
    assert black_friday / normal_friday > 2.0
    christmas_week = total[pd.Timestamp("2024-12-17") : pd.Timestamp("2024-12-23")].mean()
    early_november = total[pd.Timestamp("2024-11-04") : pd.Timestamp("2024-11-17")].mean()
    assert christmas_week > 1.3 * early_november
    store_units = demand.groupby("date")["expected_store_units"].sum()
    assert store_units[pd.Timestamp("2024-12-25")] == 0.0  # stores closed
    online = demand.groupby("date")["expected_online_units"].sum()
    assert (
        online[pd.Timestamp("2024-12-02")] > 2.5 * online[pd.Timestamp("2024-11-18")]
    )  # Cyber Monday


def test_weekly_pattern_visible(run: tuple[Simulator, list[SimEvent]], demand: pd.DataFrame):
    total = daily_expected(demand)
    cal = run[0].truth.calendar_frame().set_index("date")
    plain = total[cal.holiday_name.isna()]
    by_weekday = plain.groupby(plain.index.day_of_week).mean()
    assert by_weekday[5] > 1.3 * by_weekday[1]  # Saturday vs Tuesday


def test_intermittent_and_fast_series(demand: pd.DataFrame):
    zero_share = (demand.demand_units == 0).groupby([demand.sku, demand.store_id]).mean()
    assert (zero_share > 0.5).mean() > 0.3
    assert (zero_share < 0.1).any()


def test_order_lines_add_up_to_truth(events: list[SimEvent], demand: pd.DataFrame):
    sold: Counter[tuple[date, str, str]] = Counter()
    for v in of(events, "orders", "ORDER_PLACED"):
        for line in v["lines"]:
            sold[(day_of(v["event_time"]), line["sku"], v["store_id"])] += line["quantity"]
    truth = demand[demand.sold_units > 0]
    expected = {
        (d.date(), s, k): int(u)
        for d, s, k, u in zip(truth.date, truth.sku, truth.store_id, truth.sold_units, strict=True)
    }
    assert dict(sold) == expected
    assert (demand.sold_units == demand.demand_units).all()  # unconstrained by default


def test_expected_demand_is_rebuilt_exactly(
    run: tuple[Simulator, list[SimEvent]], demand: pd.DataFrame
):
    truth = run[0].truth
    day = truth.days[10]
    base = truth.world.skus.base[: day.n_sku]
    rows = demand[demand.date == pd.Timestamp(day.date)]
    assert np.array_equal(
        rows.expected_store_units.to_numpy(), (base * day.store_scale[:, None]).ravel()
    )
    assert len(truth.holidays) >= 5 and truth.holidays[date(2024, 11, 29)] == "Black Friday"


# -- catalog, orders, prices ----------------------------------------------------------------


def test_new_skus_created_before_first_sale(
    run: tuple[Simulator, list[SimEvent]], events: list[SimEvent]
):
    created = {v["sku"]: v["event_time"] for v in of(events, "catalog", "SKU_CREATED")}
    launched_later = [s for s, t in created.items() if t > START_MS]
    assert len(launched_later) >= SMALL.new_skus_per_week * 6
    first_sale: dict[str, int] = {}
    for v in of(events, "orders", "ORDER_PLACED"):
        for line in v["lines"]:
            first_sale.setdefault(line["sku"], v["event_time"])
    assert all(created[s] <= t for s, t in first_sale.items())
    assert any(s in first_sale for s in launched_later)
    skus = run[0].truth.sku_frame().set_index("sku")
    for s in launched_later:
        assert day_ms(skus.launch_date[s].date()) == created[s]


def test_quantities_prices_discounts_plausible(events: list[SimEvent]):
    promoted = 0
    for v in of(events, "orders"):
        assert v["lines"]
        for line in v["lines"]:
            assert line["quantity"] > 0
            assert math.isfinite(line["unit_price"]) and line["unit_price"] > 0
            assert 0.0 <= line["discount"] <= line["unit_price"]
            assert (line["discount"] > 0) == (line["promotion_id"] is not None)
            promoted += line["promotion_id"] is not None
    assert promoted > 0
    prices = [v["price"] for v in of(events, "catalog")]
    assert all(math.isfinite(p) and p > 0 for p in prices)
    assert of(events, "catalog", "PRICE_CHANGED")


def test_cancellations_and_returns_follow_their_order(events: list[SimEvent]):
    placed = {v["order_id"]: v for v in of(events, "orders", "ORDER_PLACED")}
    cancelled, returned = (
        of(events, "orders", "ORDER_CANCELLED"),
        of(events, "orders", "ORDER_RETURNED"),
    )
    assert cancelled and returned
    for v in cancelled + returned:
        original = placed[v["order_id"]]
        assert v["event_time"] > original["event_time"]
        assert (v["customer_id"], v["store_id"], v["channel"]) == (
            original["customer_id"],
            original["store_id"],
            original["channel"],
        )
        bought = {line["sku"]: line["quantity"] for line in original["lines"]}
        assert all(0 < line["quantity"] <= bought[line["sku"]] for line in v["lines"])
    assert all(
        day_of(v["event_time"]) == day_of(placed[v["order_id"]]["event_time"]) for v in cancelled
    )


def test_channels_guests_and_anonymous_store_orders(events: list[SimEvent]):
    placed = of(events, "orders", "ORDER_PLACED")
    kinds = Counter((v["channel"], v["customer_id"] is None) for v in placed)
    for kind in [("STORE", True), ("STORE", False), ("WEB", True), ("WEB", False), ("APP", False)]:
        assert kinds[kind] > 0, kind
    assert (
        kinds[("STORE", True)] + kinds[("STORE", False)]
        > kinds[("WEB", False)] + kinds[("WEB", True)]
    )


# -- customers and sessions -----------------------------------------------------------------


def test_churned_customers_stop_buying_and_visiting(
    run: tuple[Simulator, list[SimEvent]], events: list[SimEvent]
):
    customers = run[0].truth.customer_frame().set_index("customer_id")
    churned = customers[customers.churn_date.notna()]
    assert len(churned) > 10
    churn_ms = {c: day_ms(d.date()) for c, d in churned.churn_date.items()}
    devices = {
        a: churn_ms[c]
        for c, row in churned.iterrows()
        for a in (row.web_anonymous_id, row.app_anonymous_id)
    }
    for v in of(events, "orders", "ORDER_PLACED"):
        assert v["event_time"] < churn_ms.get(v["customer_id"], END_MS)
    for v in of(events, "clickstream"):
        assert v["event_time"] < devices.get(v["anonymous_id"], END_MS)
    placed = Counter(
        v["customer_id"] for v in of(events, "orders", "ORDER_PLACED") if v["customer_id"]
    )
    assert all(placed[c] == n for c, n in customers.orders_placed.items())
    # Dropout happens right after a purchase: the last order is the day before the churn date.
    last: dict[str, int] = {}
    for v in of(events, "orders", "ORDER_PLACED"):
        if v["customer_id"] in churn_ms:
            last[v["customer_id"]] = v["event_time"]
    assert {c: day_of(t) + timedelta(days=1) for c, t in last.items()} == {
        c: day_of(ms) for c, ms in churn_ms.items()
    }
    assert (customers.purchase_rate_per_day > 0).all()
    assert customers.join_date.max() > pd.Timestamp(SMALL.start_date)  # new customers arrive


def test_sessions_login_and_recommendation_attribution(events: list[SimEvent]):
    sessions: dict[str, list[dict]] = defaultdict(list)
    for v in of(events, "clickstream"):
        sessions[v["session_id"]].append(v)
    logins = 0
    for evs in sessions.values():
        assert len({v["anonymous_id"] for v in evs}) == 1
        types = [v["event_type"] for v in evs]
        if "LOGIN" in types:
            at = types.index("LOGIN")
            assert all(v["customer_id"] is not None for v in evs[at:])
            logins += any(v["customer_id"] is None for v in evs[:at])
    assert logins > 0  # anonymous browsing joined to a customer by the later LOGIN
    impressions = {
        (v["impression_id"], v["sku"]): v
        for v in of(events, "clickstream", "RECOMMENDATION_IMPRESSION")
    }
    clicks = {
        (v["impression_id"], v["sku"]) for v in of(events, "clickstream", "RECOMMENDATION_CLICK")
    }
    attributed = 0
    for v in of(events, "orders", "ORDER_PLACED"):
        for line in v["lines"]:
            if line["impression_id"] is not None:
                attributed += 1
                shown = impressions[(line["impression_id"], line["sku"])]
                assert (line["impression_id"], line["sku"]) in clicks
                assert shown["event_time"] <= v["event_time"] and v["channel"] in ("WEB", "APP")
    assert attributed > 0


def test_recommendation_lift_recorded(run: tuple[Simulator, list[SimEvent]]):
    truth = run[0].truth
    recs = truth.recommendation_frame()
    assert len(recs) == SMALL.days * SMALL.slate_size
    assert list(recs.lift.iloc[: SMALL.slate_size]) == list(SMALL.recommendation_lift)
    sku_days = truth.sku_day_frame()
    lifted = sku_days[sku_days.recommendation_lift > 1]
    assert len(lifted) == len(recs)


# -- supply and inventory -------------------------------------------------------------------


def test_disruptions_lengthen_lead_times(
    run: tuple[Simulator, list[SimEvent]], events: list[SimEvent]
):
    episodes = run[0].truth.disruption_frame()
    assert len(episodes) == SMALL.disruption_episodes
    assert ((episodes.end_date - episodes.start_date).dt.days + 1).between(7, 21).all()
    created = {v["po_id"]: v for v in of(events, "supplier", "PO_CREATED")}
    lead: dict[str, float] = {}
    for v in of(events, "supplier", "SHIPMENT_RECEIVED"):
        lead[v["po_id"]] = (v["event_time"] - created[v["po_id"]]["event_time"]) / DAY_MS
    checked = 0
    for ep in episodes.itertuples():
        inside: list[float] = []
        outside: list[float] = []
        for po, v in created.items():
            if v["supplier_id"] != ep.supplier_id or po not in lead:
                continue
            d = pd.Timestamp(day_of(v["event_time"]))
            (inside if ep.start_date <= d <= ep.end_date else outside).append(lead[po])
        if len(inside) >= 3 and len(outside) >= 3:
            assert np.mean(inside) > 1.3 * np.mean(outside)
            checked += 1
    assert checked >= 1
    notices = Counter(v["supplier_id"] for v in of(events, "supplier", "DELAY_NOTICE"))
    assert notices


def test_episode_onset_notices_for_in_flight_pos(
    run: tuple[Simulator, list[SimEvent]], events: list[SimEvent]
):
    supply = run[0].truth.supply
    created = {v["po_id"]: v for v in of(events, "supplier", "PO_CREATED")}
    received = {v["po_id"]: v for v in of(events, "supplier", "SHIPMENT_RECEIVED")}
    onset = [v for v in of(events, "supplier", "DELAY_NOTICE") if v["event_id"].startswith("sn")]
    assert onset and len({v["event_id"] for v in onset}) == len(onset)
    checked = 0
    for ep in supply.disruptions:
        start = START_MS + ep.start_day * DAY_MS
        mine = [v for v in onset if v["supplier_id"] == ep.supplier_id]
        if not mine:
            continue
        checked += 1
        assert supply.onset_notices[ep.episode_id] == (
            min(v["event_time"] for v in mine),
            len(mine),
        )
        for v in mine:
            assert start <= v["event_time"] < start + 2 * DAY_MS  # within 2 days of the start
            assert created[v["po_id"]]["event_time"] < start  # in flight: created before...
            if v["po_id"] in received:  # ...and not received yet (a warning: it stays put)
                assert received[v["po_id"]]["event_time"] > v["event_time"]
            assert v["delay_days"] >= 1.0 and v["reason"] == ep.reason
            assert v["expected_date"] > created[v["po_id"]]["expected_date"]
        # Every PO of the supplier in flight at the first notice got one.
        t0 = min(v["event_time"] for v in mine)
        flying = {
            po
            for po, c in created.items()
            if c["supplier_id"] == ep.supplier_id
            and c["event_time"] < start
            and (po not in received or received[po]["event_time"] > t0 + 2 * 3_600_000)
        }
        assert flying <= {v["po_id"] for v in mine}
    assert checked >= 1


def test_onset_notices_switch_off_gives_the_old_stream(events: list[SimEvent]):
    """The notices draw from their own stream and ids: without them, nothing else moves."""
    off = list(Simulator(dataclasses.replace(SMALL, disruption_notices=False)).events())
    assert [e for e in events if not e.value["event_id"].startswith("sn")] == off
    assert len(off) < len(events)


def test_scheduled_disruption_adds_an_episode_and_moves_only_supply(events: list[SimEvent]):
    """The demo schedules an episode in its live window; demand and customers stay put."""
    sim = Simulator(dataclasses.replace(SMALL, scheduled_disruptions=(30,)))
    scheduled = list(sim.events())
    extra = [e for e in sim.truth.disruption_frame().itertuples() if e.episode_id == "DS001"]
    assert len(extra) == 1
    assert pd.Timestamp(extra[0].start_date).date() == SMALL.start_date + timedelta(days=30)

    def others(evs: list[SimEvent]) -> list[SimEvent]:
        return [e for e in evs if e.family in ("orders", "clickstream", "catalog", "stores")]

    assert others(scheduled) == others(events)
    assert scheduled != events  # the supplier's POs and receipts did change


def test_inventory_consistent(events: list[SimEvent]):
    snapshots = of(events, "inventory")
    assert snapshots and all(v["on_hand"] >= 0 and v["on_order"] >= 0 for v in snapshots)
    full_count = [v for v in snapshots if day_of(v["event_time"]) == SMALL.start_date]
    assert len(full_count) == SMALL.skus * SMALL.stores  # everything counted on day 0
    partial = [v for v in of(events, "supplier", "SHIPMENT_RECEIVED")]
    assert partial and all(v["quantity"] >= 1 for v in partial)


def test_ground_truth_files(run: tuple[Simulator, list[SimEvent]], demand: pd.DataFrame, tmp_path):
    paths = write_ground_truth(run[0].truth, tmp_path)
    assert all(p.exists() for p in paths)
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["days_generated"] == SMALL.days and index["config"]["seed"] == SMALL.seed
    read = pd.read_csv(tmp_path / "demand.csv.gz")
    assert len(read) == len(demand) == index["files"]["demand.csv.gz"]["rows"]
    assert np.array_equal(read.expected_units.to_numpy(), demand.expected_units.to_numpy())
    customers = pd.read_csv(tmp_path / "customers.csv.gz")
    assert (
        customers.churn_date.notna().sum() == run[0].truth.customer_frame().churn_date.notna().sum()
    )


# -- switches and config --------------------------------------------------------------------


def test_switches_turn_mechanisms_off():
    cfg = SimulationConfig(
        seed=3,
        days=21,
        skus=15,
        stores=3,
        customers=100,
        clickstream=False,
        recommendations=False,
        promotions=False,
        price_changes=False,
        new_skus=False,
        customer_churn=False,
        disruptions=False,
        holidays=False,
        weekly_seasonality=False,
        yearly_seasonality=False,
    )
    sim = Simulator(cfg)
    evs = list(sim.events())
    assert not of(evs, "clickstream") and not of(evs, "catalog", "PRICE_CHANGED")
    assert len(of(evs, "catalog", "SKU_CREATED")) == cfg.skus
    assert all(
        line["promotion_id"] is None and line["impression_id"] is None
        for v in of(evs, "orders")
        for line in v["lines"]
    )
    truth = sim.truth
    assert truth.customer_frame().churn_date.isna().all() and truth.disruption_frame().empty
    # No calendar effect: every SKU x store has the same expected demand every day.
    per_day = truth.demand_frame().groupby("date").expected_units.sum()
    assert np.allclose(per_day, per_day.iloc[0])


def test_lost_sales_caps_sales_by_stock():
    cfg = SimulationConfig(
        seed=4, days=30, skus=15, stores=3, customers=100, lost_sales=True, cover_days=3
    )
    sim = Simulator(cfg)
    evs = list(sim.events())
    frame = sim.truth.demand_frame()
    assert (frame.sold_units <= frame.demand_units).all()
    assert (frame.sold_units < frame.demand_units).any()
    assert all(v["on_hand"] >= 0 for v in of(evs, "inventory"))


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="days"):
        SimulationConfig(days=0)
    with pytest.raises(ValueError, match="online_share"):
        SimulationConfig(online_share=1.5)
    with pytest.raises(ValueError, match="country"):
        Simulator(SimulationConfig(country="XX"))


@pytest.mark.parametrize(
    "module",
    [
        "streams.simulator",
        "streams.simulator.config",
        "streams.simulator.events",
        "streams.simulator.world",
        "streams.simulator.seasons",
        "streams.simulator.pricing",
        "streams.simulator.recommender",
        "streams.simulator.demand",
        "streams.simulator.customers",
        "streams.simulator.sessions",
        "streams.simulator.orders",
        "streams.simulator.shopping",
        "streams.simulator.supply",
        "streams.simulator.generator",
        "streams.simulator.truth",
        "streams.simulator.truth_files",
        "streams.simulator.replay",
    ],
)
def test_doctests(module: str):
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
