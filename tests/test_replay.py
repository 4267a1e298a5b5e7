"""Replaying a user's own history (CSV / Parquet) into schema-shaped events."""

from __future__ import annotations

from pathlib import Path

import fastavro
import fastavro.validation
import pandas as pd
import pytest

from streams.registry import SchemaCatalog
from streams.simulator import SimEvent, SimulationConfig, Simulator, replay_events

CATALOG = SchemaCatalog.load()

ORDERS_CSV = """order_id,when,shop,sku,qty,price,discount,promotion_id,customer,event_type
A1,2024-11-29T10:00:00Z,S1,K1,2,9.99,1.00,P1,C7,
A1,2024-11-29T10:00:00Z,S1,K2,1,4.50,,,C7,
B2,2024-11-29 09:30:00,S2,K1,3,9.99,0,,,order_placed
A1,2024-11-29T12:15:00Z,S1,K2,1,4.50,,,C7,ORDER_CANCELLED
"""
ORDER_MAP = {
    "when": "event_time",
    "shop": "store_id",
    "qty": "quantity",
    "price": "unit_price",
    "customer": "customer_id",
}


def fits(events: list[SimEvent], family: str) -> None:
    parsed = fastavro.parse_schema(dict(CATALOG.latest(family).schema))
    for e in events:
        fastavro.validation.validate(e.value, parsed, raise_errors=True)


@pytest.fixture(scope="module")
def simulated() -> list[SimEvent]:
    return list(
        Simulator(SimulationConfig(seed=9, days=20, skus=15, stores=3, customers=80)).events()
    )


def test_flat_order_lines_group_into_orders(tmp_path: Path):
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS_CSV)
    events = list(replay_events(path, "orders", column_map=ORDER_MAP))
    fits(events, "orders")
    assert [(e.value["order_id"], e.value["event_type"]) for e in events] == [
        ("B2", "ORDER_PLACED"),
        ("A1", "ORDER_PLACED"),
        ("A1", "ORDER_CANCELLED"),
    ]
    b2, a1, cancel = (e.value for e in events)
    assert [e.key for e in events] == ["S2", "S1", "S1"]
    assert a1["customer_id"] == "C7" and b2["customer_id"] is None and b2["channel"] == "STORE"
    assert [(x["sku"], x["quantity"], x["discount"], x["promotion_id"]) for x in a1["lines"]] == [
        ("K1", 2, 1.0, "P1"),
        ("K2", 1, 0.0, None),
    ]
    assert (
        a1["event_time"] == 1_732_874_400_000 and b2["event_time"] == a1["event_time"] - 1_800_000
    )
    assert cancel["lines"] == [a1["lines"][1]]
    assert a1["event_id"] == "rp-A1-ORDER_PLACED" and a1["currency"] == "USD"


def test_missing_column_is_named(tmp_path: Path):
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS_CSV)
    without_store = {k: v for k, v in ORDER_MAP.items() if k != "shop"}
    with pytest.raises(
        ValueError, match=r"missing required column\(s\) for orders: \['store_id'\].*column_map"
    ):
        list(replay_events(path, "orders", column_map=without_store))
    with pytest.raises(ValueError, match="not in the file: \\['nope'\\]"):
        list(replay_events(path, "orders", column_map={**ORDER_MAP, "nope": "sku"}))
    with pytest.raises(ValueError, match="unknown family"):
        list(replay_events(path, "returns"))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("qty", "two", "'quantity': 'two' in row 1 is not a whole number"),
        ("when", "1732874400", "seconds"),
        ("event_type", "SHIPPED", "one of"),
        ("shop", "", "empty value in row 1"),
    ],
)
def test_bad_values_are_refused_with_their_row(
    tmp_path: Path, column: str, value: str, message: str
):
    frame = pd.read_csv(pd.io.common.StringIO(ORDERS_CSV), dtype=str, keep_default_na=False)
    frame.loc[0, column] = value
    path = tmp_path / "orders.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=message):
        list(replay_events(path, "orders", column_map=ORDER_MAP))


def test_simulated_orders_round_trip_through_flat_csv(tmp_path: Path, simulated: list[SimEvent]):
    orders = [e for e in simulated if e.family == "orders"]
    rows = [
        {**{k: v for k, v in e.value.items() if k != "lines"}, **line}
        for e in orders
        for line in e.value["lines"]
    ]
    path = tmp_path / "orders.csv.gz"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert list(replay_events(path, "orders")) == orders


@pytest.mark.parametrize("family", ["clickstream", "supplier", "catalog", "stores", "inventory"])
def test_simulated_events_round_trip_through_csv(
    tmp_path: Path, simulated: list[SimEvent], family: str
):
    original = [e for e in simulated if e.family == family]
    path = tmp_path / f"{family}.csv"
    pd.DataFrame([e.value for e in original]).to_csv(path, index=False)
    replayed = list(replay_events(path, family))
    fits(replayed, family)
    assert replayed == original


def test_parquet_with_timestamps(tmp_path: Path, simulated: list[SimEvent]):
    pytest.importorskip("pyarrow")
    original = [e for e in simulated if e.family == "inventory"][:500]
    frame = pd.DataFrame([e.value for e in original]).drop(columns=["event_id"])
    frame["event_time"] = pd.to_datetime(frame["event_time"], unit="ms")  # naive = UTC
    path = tmp_path / "stock.parquet"
    frame.to_parquet(path)
    replayed = list(replay_events(path, "inventory"))
    fits(replayed, "inventory")
    assert [e.value["event_time"] for e in replayed] == [e.event_time for e in original]
    assert [e.value["on_hand"] for e in replayed] == [e.value["on_hand"] for e in original]
    assert replayed[0].value["event_id"] == "rp-stock-000000000"
