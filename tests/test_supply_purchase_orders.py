"""The purchase-order state machine and the supplier rate windows."""

from __future__ import annotations

from typing import Any

from processors.purchase_orders import DAY_MS, POBook
from processors.supplier_metrics import SupplierMetrics
from processors.supply_impact import CoverTracker, impacted_pairs

T0 = 1_731_000_000_000 - 1_731_000_000_000 % DAY_MS  # a UTC midnight


def ev(event_type: str, event_id: str, **over: Any) -> dict[str, Any]:
    value = {
        "event_id": event_id,
        "event_type": event_type,
        "supplier_id": "SUP1",
        "po_id": "PO1",
        "sku": "K1",
        "store_id": "S1",
        "quantity_ordered": None,
        "quantity": None,
        "shipment_id": None,
        "expected_date": None,
        "actual_date": None,
        "delay_days": None,
        "severity": None,
        "reason": None,
    }
    value.update(over)
    return value


CREATED = ev("PO_CREATED", "e1", quantity_ordered=10, expected_date=T0 + 5 * DAY_MS)


def receipt(event_id: str, shipment: str, qty: int, day: float) -> dict[str, Any]:
    at = T0 + int(day * DAY_MS)
    return ev("SHIPMENT_RECEIVED", event_id, quantity=qty, shipment_id=shipment, actual_date=at)


def kinds(outcomes: list[Any]) -> list[str]:
    return [o.kind for o in outcomes]


def test_full_life_in_order():
    book = POBook()
    assert book.apply(CREATED, T0) == []
    dispatch = ev("SHIPMENT_DISPATCHED", "e2", quantity=10, shipment_id="SH1")
    assert kinds(book.apply(dispatch, T0 + DAY_MS)) == ["dispatch"]
    out = book.apply(receipt("e3", "SH1", 10, 4.5), T0 + int(4.5 * DAY_MS))
    assert kinds(out) == ["receipt", "closed"]
    rec, closed = out
    assert rec.lead_days == 4.5 and rec.promised_days == 5.0 and rec.lateness_days == -0.5
    assert closed.fill_rate == 1.0
    assert "PO1" not in book.open and "PO1" in book.closed


def test_receipt_before_creation_waits_for_it():
    book = POBook()
    assert book.apply(receipt("e3", "SH1", 10, 6), T0 + 6 * DAY_MS) == []
    out = book.apply(CREATED, T0)  # arrives late, carries the creation time
    assert kinds(out) == ["receipt", "closed"]
    assert out[0].lead_days == 6.0 and out[0].lateness_days == 1.0


def test_duplicates_by_event_id_and_by_shipment_are_ignored():
    book = POBook()
    book.apply(CREATED, T0)
    first = receipt("e3", "SH1", 4, 3)
    assert kinds(book.apply(first, T0 + 3 * DAY_MS)) == ["receipt"]
    assert book.apply(first, T0 + 3 * DAY_MS) == []  # same event id
    assert book.apply(receipt("e4", "SH1", 4, 3), T0 + 3 * DAY_MS) == []  # same shipment
    assert book.counts["duplicates"] == 2
    assert book.open["PO1"].received == 4


def test_partial_receipts_close_when_complete_or_quiet():
    book = POBook(partial_close_days=7)
    book.apply(CREATED, T0)
    book.apply(receipt("e3", "SH1", 4, 3), T0 + 3 * DAY_MS)
    out = book.apply(receipt("e4", "SH2", 6, 4), T0 + 4 * DAY_MS)
    assert kinds(out) == ["closed"] and out[0].fill_rate == 1.0

    book.apply({**CREATED, "po_id": "PO2", "event_id": "f1"}, T0)
    book.apply({**receipt("f3", "SHX", 3, 3), "po_id": "PO2"}, T0 + 3 * DAY_MS)
    assert book.advance(T0 + 9 * DAY_MS) == []  # quiet for 6 days only
    out = book.advance(T0 + 10 * DAY_MS + 1)
    assert kinds(out) == ["closed"] and out[0].fill_rate == 0.3


def test_open_po_is_flagged_late_once_by_the_watermark():
    book = POBook(late_grace_days=1)
    book.apply(CREATED, T0)
    assert book.advance(T0 + 5 * DAY_MS) == []  # the committed day itself is still on time
    out = book.advance(T0 + 6 * DAY_MS)
    assert kinds(out) == ["late"] and out[0].lateness_days == 1.0
    assert book.advance(T0 + 7 * DAY_MS) == []  # flagged once
    assert book.overdue("SUP1") == 1
    out = book.apply(receipt("e3", "SH1", 10, 8), T0 + 8 * DAY_MS)
    assert kinds(out) == ["receipt", "closed"] and out[0].lateness_days == 3.0


def test_events_after_close_and_orphans_do_not_reopen_or_leak():
    book = POBook(abandon_days=10)
    book.apply(CREATED, T0)
    book.apply(receipt("e3", "SH1", 10, 4), T0 + 4 * DAY_MS)
    notice = ev("DELAY_NOTICE", "e9", delay_days=2.0)
    assert book.apply(notice, T0 + 5 * DAY_MS) == []
    assert book.counts["after_close"] == 1
    orphan = ev("DELAY_NOTICE", "o1", po_id="PO-X", delay_days=1.0)
    assert kinds(book.apply(orphan, T0)) == ["delay"]
    book.advance(T0 + 11 * DAY_MS)
    assert "PO-X" not in book.open


def test_metrics_slide_in_event_time():
    book, m = POBook(), SupplierMetrics(window_days=10, on_time_grace_days=1.0)
    book.apply(CREATED, T0)
    for o in book.apply(receipt("e3", "SH1", 5, 5.5), T0 + int(5.5 * DAY_MS)):
        m.add(o)
    for o in book.advance(T0 + 13 * DAY_MS):  # the partial PO closes after a quiet week
        m.add(o)
    r = m.rates(T0 + 13 * DAY_MS)
    assert r["receipts"] == 1 and r["on_time_rate"] == 1.0 and r["fill_rate"] == 0.5
    assert m.rates(T0 + 30 * DAY_MS)["receipts"] == 0


def test_days_of_cover_and_impacted_pairs():
    c = CoverTracker(alpha=0.5)
    assert c.on_sale(3, T0) is None  # no stock position yet
    c.on_snapshot(20, T0 + 3_600_000)
    cover = c.on_sale(4, T0 + DAY_MS)  # a new day: the first day (3 units) is folded in
    assert cover is not None and cover.on_hand == 16 and cover.daily_demand == 3.0
    assert impacted_pairs({("K1", "S1"): (cover.days_of_cover, cover.t)}, {("K1", "S1"): 9.0})
    assert not impacted_pairs({("K1", "S1"): (cover.days_of_cover, cover.t)}, {("K1", "S1"): 2})
