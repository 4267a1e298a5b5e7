"""What crosses between worker processes comes back equal, with its types, and renders the
same: packets (streams/flows/packets.py) and forecast blocks (processors/demand_publish.py).
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from processors.demand_publish import Forecasts, json_rows, milli, milli_json_rows
from processors.records import DeadLetter, Event, SourceRecord
from processors.supply_impact import Cover
from streams.flows.packets import CoverPacket, EventPacket, Packet

ORDER = {
    "event_id": "o-1",
    "event_type": "ORDER_PLACED",
    "event_time": 1_730_419_200_000,
    "store_id": "S001",
    "customer_id": None,
    "lines": [{"sku": "SK-1", "quantity": 2, "unit_price": 9.99, "discount": 0.1}],
    "is_gift": True,
    "note": b"\x00\xff",
}


def _crossed(obj: object) -> object:
    """As Bytewax sends an item to another process: pickled twice, the second one sent."""
    pickle.dumps(obj)
    return pickle.loads(pickle.dumps(obj))


def test_event_packet_round_trip_keeps_values_and_types() -> None:
    events = [Event("orders", f"k{i}", ORDER, 1_730_419_200_000 + i, 3, "t", 2, i)
              for i in range(3)]  # fmt: skip
    got = _crossed(EventPacket(events))
    assert type(got) is EventPacket and got == events
    assert all(type(e) is Event for e in got)
    assert got[0].value["lines"][0]["unit_price"] == 9.99 and got[0].value["note"] == b"\x00\xff"


def test_packet_is_encoded_once_and_marshal_is_used_for_builtins() -> None:
    packet = EventPacket([Event("orders", None, ORDER, 1, 0, "t", 0, 0)])
    first = pickle.dumps(packet)
    blob = packet._blob
    assert blob is not None and blob[:1] == b"M"
    assert pickle.dumps(packet) == first and packet._blob is blob  # the second pickle reuses it


def test_a_dead_letter_in_a_packet_falls_back_to_pickle() -> None:
    letter = DeadLetter(SourceRecord("t", 0, 5, None, b"x"), "supplier", "process:supply",
                        "KeyError", "'supplier_id'")  # fmt: skip
    event = Event("supplier", "SUP-1", {"event_time": 1}, 1, 0, "t", 0, 4)
    got = _crossed(EventPacket([event, letter]))
    assert got == [event, letter] and type(got[0]) is Event and type(got[1]) is DeadLetter
    assert EventPacket([event, letter]).__reduce__()[1][1][:1] == b"P"


def test_plain_and_cover_packets_round_trip() -> None:
    moves = Packet([("sale", "SK-1", 3, 7), ("snap", "SK-2", 10, 8)])
    assert _crossed(moves) == moves
    covers = CoverPacket([("SK-1", Cover(3, 1.5, 2.0, 7)), ("SK-2", Cover(0, 0.0, 999.0, 9))])
    got = _crossed(covers)
    assert got == covers and all(type(c) is Cover for _, c in got)


def test_an_empty_packet_round_trips() -> None:
    assert _crossed(EventPacket()) == [] and _crossed(CoverPacket()) == []


def _rounded_json(values: np.ndarray) -> list[str]:
    """The rendering before forecasts crossed as thousandths: round in float64."""
    rows = np.round(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0), 3).tolist()
    return [orjson.dumps(r).decode() for r in rows]


@given(arrays(np.float64, (3, 5), elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_thousandths_render_exactly_as_rounding_the_floats(values: np.ndarray) -> None:
    with np.errstate(over="ignore"):  # x * 1000 past float64's range: inf, as np.round has it
        k = milli(values)
        assert milli_json_rows(k) == _rounded_json(values) == json_rows(values)
    assert k.dtype in (np.int32, np.float64)


def test_thousandths_are_int32_unless_a_negative_zero_or_a_huge_value_needs_float() -> None:
    assert milli(np.array([[1.0, 2.5, -3.25]])).dtype == np.int32
    assert milli(np.array([[-0.0001]])).dtype == np.float64  # rounds to -0.0
    assert milli(np.array([[3e6]])).dtype == np.float64  # 3e9 thousandths > 2**31
    assert milli_json_rows(milli(np.array([[-0.0001, 3e6]]))) == ["[-0.0,3000000.0]"]


def test_a_forecast_block_renders_the_same_after_crossing() -> None:
    rng = np.random.default_rng(7)
    names = [f"n{i}" for i in range(10)]
    arr = rng.gamma(2.0, 3.0, (10, 28))
    arr[0, 0], arr[1, 1] = math.nan, -0.0
    actual = {"sku": rng.poisson(3.0, 10).astype(float)}
    day = Forecasts({"sku": names}, {"sku": [arr, arr * 0.5, arr, arr * 2]}, actual, None,
                    86_400_000, "v1", 0)  # fmt: skip
    for block in day.blocks(3):
        got = _crossed(block)
        assert got.writes() == block.writes()
    assert day.writes()[0].fields["mean"] == _rounded_json(arr)[0]
