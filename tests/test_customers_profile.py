"""Per-customer profile updates: RFM, Welford inter-purchase times, clickstream, packing."""

from __future__ import annotations

import random
import statistics

import pytest

from processors.customer_profile import (
    DAY_MS,
    FEATURE_NAMES,
    AnonymousActivity,
    apply_click,
    apply_order,
    features,
    new_profile,
    pack,
    packed_times,
    unpack,
)

T0 = 1_731_000_000_000
CATS = {"K1": "C1", "K2": "C2", "K3": "C3", "K4": "C4"}.get


def line(sku: str = "K1", q: int = 1, price: float = 10.0, disc: float = 0.0) -> dict:
    return {"sku": sku, "quantity": q, "unit_price": price, "discount": disc}


def test_orders_update_recency_frequency_monetary_and_welford():
    rng = random.Random(3)
    gaps = [rng.uniform(1, 40) for _ in range(30)]
    p = new_profile(T0)
    t = T0
    apply_order(p, "ORDER_PLACED", [line(q=2, price=10.0, disc=1.0)], t, CATS)
    for g in gaps:
        t += int(g * DAY_MS)
        apply_order(p, "ORDER_PLACED", [line("K2", 1, 5.0)], t, CATS)
    assert p.orders == 31 and p.first_purchase == T0 and p.last_purchase == t
    assert p.monetary == pytest.approx(18.0 + 30 * 5.0)
    assert p.discount_value == pytest.approx(2.0) and p.gross_value == pytest.approx(170.0)
    exact = [int(g * DAY_MS) / DAY_MS for g in gaps]
    assert p.ipt_n == 30 and p.ipt_mean == pytest.approx(statistics.mean(exact))
    assert p.ipt_m2 / (p.ipt_n - 1) == pytest.approx(statistics.variance(exact))
    f = features(p, t + 10 * DAY_MS)
    assert set(f) == set(FEATURE_NAMES)
    assert f["discount_share"] == pytest.approx(2.0 / 170.0)
    assert f["recency_over_ipt"] == pytest.approx(10 / statistics.mean(exact), rel=1e-6)


def test_cancellations_and_returns():
    p = new_profile(T0)
    apply_order(p, "ORDER_PLACED", [line(q=3)], T0, CATS)
    apply_order(p, "ORDER_CANCELLED", [line(q=1)], T0 + 1000, CATS)
    apply_order(p, "ORDER_RETURNED", [line(q=1)], T0 + 5 * DAY_MS, CATS)
    assert (p.orders, p.cancels, p.returns) == (1, 1, 1)
    assert p.monetary == pytest.approx(20.0) and p.returned_value == pytest.approx(10.0)
    assert p.last_purchase == T0 and p.last_event == T0 + 5 * DAY_MS


def test_categories_are_bounded_and_keep_the_heavy_ones():
    p = new_profile(T0)
    for sku in ["K1"] * 5 + ["K2"] * 3 + ["K3", "K4", "K3"]:
        apply_order(p, "ORDER_PLACED", [line(sku)], T0, CATS)
    top = p.top_categories()
    assert len(top) == 3 and top[0] == "C1"
    bad = [{"sku": "K1", "quantity": None, "unit_price": float("nan"), "discount": None}]
    apply_order(p, "ORDER_PLACED", bad, T0, CATS)  # bad numbers count as zero, never raise


def test_clickstream_sessions_views_abandoned_carts_and_rec_clicks():
    p = new_profile(T0)
    apply_click(p, "PAGE_VIEW", 11, T0)
    apply_click(p, "PRODUCT_VIEW", 11, T0 + 1)
    apply_click(p, "ADD_TO_CART", 11, T0 + 2)
    apply_click(p, "RECOMMENDATION_CLICK", 22, T0 + DAY_MS)  # new session: cart abandoned
    apply_click(p, "ADD_TO_CART", 22, T0 + DAY_MS + 1)
    apply_order(p, "ORDER_PLACED", [line()], T0 + DAY_MS + 2, CATS)  # bought: not abandoned
    assert apply_click(p, "PAGE_VIEW", 33, T0 + 2 * DAY_MS) is True
    assert (p.sessions, p.product_views, p.cart_adds, p.rec_clicks) == (3, 1, 2, 1)
    assert p.abandoned_carts == 1 and p.last_visit == T0 + 2 * DAY_MS
    f = features(p, T0 + 3 * DAY_MS)
    assert f["visited"] == 1.0 and f["visited_since_purchase"] == 1.0


def test_anonymous_activity_is_attached_at_login_without_double_counting():
    a = AnonymousActivity(last_seen=T0)
    a.count("PAGE_VIEW", 7, T0)
    a.count("PRODUCT_VIEW", 7, T0 + 1)
    a.count("PRODUCT_VIEW", 8, T0 + DAY_MS)
    p = new_profile(T0 + DAY_MS)
    a.merge_into(p)
    apply_click(p, "LOGIN", 8, T0 + DAY_MS + 5)  # same session as the last anonymous one
    assert (p.sessions, p.product_views) == (2, 2)
    assert a.sessions == 0 and a.product_views == 0  # handed over once


def test_pack_round_trip_is_exact_and_small():
    p = new_profile(T0)
    apply_order(p, "ORDER_PLACED", [line("K1", 2, 9.99, 0.5)], T0, CATS)
    apply_order(p, "ORDER_PLACED", [line("K2")], T0 + 9 * DAY_MS, CATS)
    apply_click(p, "ADD_TO_CART", 123456, T0 + 10 * DAY_MS)
    p.risk, p.scored_at = 0.42, T0 + 10 * DAY_MS
    data = pack(p)
    assert unpack(data) == p
    assert len(data) < 200
    assert packed_times(data) == (p.last_event, p.scored_at)
