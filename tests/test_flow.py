"""The ingest dataflow, step by step, with Bytewax's TestingSource and TestingSink."""

from __future__ import annotations

import struct

from streams.dataflow import FLOW_ID, STEP_IDS
from streams.registry import ManifestResolver, SchemaCatalog
from streams.serde import AvroSerializer
from streams.settings import Settings
from tests.helpers import T0, built_step_ids, click, message, order, run_testing_flow, store

RESOLVER = ManifestResolver(SchemaCatalog.load())
SETTINGS = Settings()
TOPICS = SETTINGS.topics.input_topics()


def run_flow(messages):
    return run_testing_flow(messages)


def test_step_ids_are_stable():
    """Renaming a step discards its recovery state: change these only with a migration."""
    assert FLOW_ID == "retailpulse"
    assert set(STEP_IDS) <= built_step_ids()


def test_good_and_bad_records_are_split_and_counted():
    enc_orders = AvroSerializer(RESOLVER, "orders")
    enc_clicks = AvroSerializer(RESOLVER, "clickstream")
    enc_stores = AvroSerializer(RESOLVER, "stores")
    good = enc_orders(order())
    msgs = [
        message(TOPICS["orders"], good, offset=0, headers=[("trace", b"abc")]),
        message(TOPICS["orders"], b"\x07garbage", offset=1, headers=[("trace", b"def")]),
        message(TOPICS["orders"], good + b"\x00", offset=2),
        message(
            TOPICS["orders"],
            enc_orders(order(lines=[{**order()["lines"][0], "unit_price": float("nan")}])),
            offset=3,
        ),
        message(TOPICS["orders"], good[:1] + struct.pack(">I", 4242) + good[5:], offset=4),
        message(TOPICS["orders"], good, offset=5),
        message(TOPICS["clickstream"], enc_clicks(click()), offset=0, partition=1),
        message(TOPICS["stores"], enc_stores(store(event_time=T0 + 5 * 86_400_000)), offset=9),
    ]
    events, dead, writes = run_flow(msgs)

    assert [(e.family, e.offset) for e in events] == [
        ("orders", 0),
        ("orders", 5),
        ("clickstream", 0),
    ]
    reasons = {d.source.offset: (d.stage, d.message) for d in dead if d.family == "orders"}
    assert reasons[1][0] == "decode" and "magic" in reasons[1][1]
    assert reasons[2][0] == "decode" and "trailing" in reasons[2][1]
    assert reasons[3][0] == "validate" and "unit_price" in reasons[3][1]
    assert reasons[4][0] == "decode" and "4242" in reasons[4][1]
    stores_dead = [d for d in dead if d.family == "stores"]
    assert stores_dead and "ahead of the broker" in stores_dead[0].message
    # original bytes and headers travel with the reason
    first = next(d for d in dead if d.source.offset == 1)
    assert first.source.value == b"\x07garbage"
    headers = dict(first.headers())
    assert headers["trace"] == b"def" and headers["rp.dlq.stage"] == b"decode"
    assert headers["rp.dlq.topic"] == TOPICS["orders"].encode()

    final = {}
    for w in writes:  # the sink keeps the newest version per key
        key = (w.kind, w.entity)
        if key not in final or w.version >= final[key].version:
            final[key] = w
    ingest = final[("ingest", "orders")].fields
    assert ingest["events"] == 2 and ingest["dead_letters"] == 4
    assert ingest["dead_letters:decode"] == 3 and ingest["dead_letters:validate"] == 1
    assert ingest["last_event_time"] == T0
    assert final[("offsets", "orders")].fields == {f"{TOPICS['orders']}:0": 6}
    assert final[("ingest", "stores")].fields["dead_letters"] == 1


def test_replaying_the_same_input_gives_the_same_totals():
    enc = AvroSerializer(RESOLVER, "orders")
    msgs = [message(TOPICS["orders"], enc(order(event_id=f"o{i}")), offset=i) for i in range(50)]
    _, _, first = run_flow(msgs)
    _, _, second = run_flow(msgs)
    assert max(first, key=lambda w: w.version) == max(second, key=lambda w: w.version)
