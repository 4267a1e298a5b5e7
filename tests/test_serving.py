"""The read API against a real server, on keys written by the real sink from the engines'
own write objects: values parsed, missing keys, alert folding, vector order, round trips."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.processes import free_port
from infra.redis_sink import RedisWriter, redis_key
from infra.serving import (
    CUSTOMER_FEATURES,
    SKU_FEATURES,
    SKU_STORE_FEATURES,
    RetailPulseReader,
)
from processors.customer_book import CustomerScore, CustomerSettings, score_writes
from processors.open_alerts import OpenAlerts
from processors.writes import HashWrite, RedisWrite, StreamAdd
from streams.errors import DecodeError, InfraError, ValidationError

pytestmark = pytest.mark.integration

DAY = 86_400_000
T0 = 1_740_614_400_000


class CountingConnection(redis.Connection):
    """Counts writes to the socket: a pipeline is one, so is a single command."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


@pytest.fixture
def writer(redis_url: str, key_prefix: str) -> Iterator[RedisWriter]:
    w = RedisWriter(redis_url, prefix=key_prefix)
    yield w
    w.close()


@pytest.fixture
def reader(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> Iterator[RetailPulseReader]:
    with RetailPulseReader(redis_url, prefix=key_prefix) as rp:
        yield rp


def _score(customer: str, risk: float, clv: float, *, alert: bool = False) -> CustomerScore:
    top = '[["bg_log_expected", 3.1634], ["recency_days", -0.57]]'
    return CustomerScore(customer, T0 - DAY, risk, 0.97, 19.8, clv, top, 35, alert, T0)


def _customers(writer: RedisWriter) -> None:
    cfg = CustomerSettings()
    writes: list[RedisWrite] = []
    for score in (
        _score("C1", 0.42, 4649.55),
        _score("C2", 0.72, 1853.09, alert=True),
        _score("C3", 0.10, 100.0),
    ):
        writes.extend(score_writes(score, cfg))
    writer.write(writes)


def _forecast(level: str, node: str, base: float, stock: bool) -> HashWrite:
    """Like processors.demand_publish.ForecastBlock.writes: JSON lists (any JSON spacing)."""
    mean = [round(base * (1 + 0.1 * d), 3) for d in range(28)]
    fields: dict[str, str | int | float] = {
        "mean": str(mean), "p10": str([round(m * 0.5, 3) for m in mean]),
        "p50": str([round(m * 0.9, 3) for m in mean]), "p90": str([round(m * 2, 3) for m in mean]),
        "model_version": 119, "as_of": T0, "actual_last_day": 3.0,
    }  # fmt: skip
    if stock:
        fields |= {"safety_stock": 1.312, "reorder_point": 3.16, "lead_days": 19.86}
    return HashWrite("forecast", f"{level}:{node}", fields, T0, channel="forecast.changes")


def _reorder(sku: str, store: str, position: int) -> HashWrite:
    fields: dict[str, str | int | float] = {
        "on_hand": position, "position": position, "reorder_point": 7.397, "safety_stock": 2.84,
        "lead_days": 19.86, "signal": int(position < 7.397), "suggested_qty": 0, "as_of": T0,
    }  # fmt: skip
    return HashWrite("reorder", f"{sku}:{store}", fields, T0)


def _alert(alert_id: str, status: str, ms: int, seq: int = 0) -> StreamAdd:
    fields: dict[str, str | int | float] = {
        "alert_id": alert_id, "status": status, "supplier_id": alert_id.split("-")[0],
        "severity": "high", "score": 27.0, "affected_skus": '["SKU1", "SKU2"]',
        "affected_stores": '["S1"]', "impacted_pairs": '[["SKU1", "S1", 0.0, 6.41]]',
        "evidence": '{"cusum": 27.0, "late_pos": 21}', "opened_at": ms - DAY, "updated_at": ms,
    }  # fmt: skip
    return StreamAdd("alerts", "supply", fields, ms, seq, channel="alerts.supply")


def test_customer_scores_and_alert_flag(writer: RedisWriter, reader: RetailPulseReader) -> None:
    _customers(writer)
    c1, c2 = reader.customer("C1"), reader.customer("C2")
    assert c1 is not None and c2 is not None
    assert (c1.churn_risk, c1.clv_365d, c1.orders, c1.horizon_days) == (0.42, 4649.55, 35, 90.0)
    assert c1.value_at_risk == round(0.42 * 4649.55, 2)
    assert c1.top_features == (("bg_log_expected", 3.1634), ("recency_days", -0.57))
    assert (c1.as_of, c1.version, c1.alerted) == (T0 - DAY, T0, False)
    assert c2.alerted is True
    assert reader.customer("nobody") is None


def test_top_churn_risks_follow_value_at_risk(
    writer: RedisWriter, reader: RetailPulseReader
) -> None:
    assert reader.top_churn_risks(5) == []
    _customers(writer)
    top = reader.top_churn_risks(2)
    assert [r.customer_id for r in top] == ["C1", "C2"]
    assert top[0].value_at_risk == pytest.approx(0.42 * 4649.55, abs=1e-3)
    forgotten = CustomerScore("C1", T0, -1.0, 0.0, 0.0, 0.0, "", 0, False, T0)
    writer.write(score_writes(forgotten, CustomerSettings()))  # a ZREM
    assert [r.customer_id for r in reader.top_churn_risks(10)] == ["C2", "C3"]
    assert reader.top_churn_risks(0) == []


def test_forecasts_parse_lists_and_stock_fields(
    writer: RedisWriter, reader: RetailPulseReader
) -> None:
    writer.write(
        [_forecast("sku_store", "SKU1:S1", 1.0, True), _forecast("total", "all", 9, False)]
    )
    f = reader.forecast("sku_store", "SKU1:S1")
    assert f is not None and (f.level, f.node) == ("sku_store", "SKU1:S1")
    assert len(f.mean) == 28 and f.mean[:2] == (1.0, 1.1) and f.p90[0] == 2.0
    assert (f.model_version, f.as_of, f.actual_last_day) == (119, T0, 3.0)
    assert (f.safety_stock, f.reorder_point, f.lead_days) == (1.312, 3.16, 19.86)
    total = reader.forecast("total", "all")
    assert total is not None and total.mean[0] == 9.0 and total.safety_stock is None
    assert reader.forecast("sku", "SKU404") is None
    with pytest.raises(ValidationError):
        reader.forecast("skus", "SKU1")


def test_open_alerts_come_from_the_open_set(writer: RedisWriter, reader: RetailPulseReader) -> None:
    assert reader.open_supply_alerts() == []
    book = OpenAlerts("alerts_open", "supply")  # what the supply engine writes beside each entry
    entries = [
        _alert("SUP1-1", "open", T0), _alert("SUP2-1", "open", T0, 1),
        _alert("SUP1-1", "update", T0 + DAY), _alert("SUP3-1", "open", T0 + DAY, 1),
        _alert("SUP2-1", "closed", T0 + 2 * DAY), _alert("SUP3-1", "update", T0 + 3 * DAY),
    ]  # fmt: skip
    writer.write([w for e in entries for w in (e, *book.update(e.fields, e.ms, e.seq))])
    alerts = reader.open_supply_alerts()
    assert [(a.alert_id, a.status, a.entry_id) for a in alerts] == [
        ("SUP3-1", "update", f"{T0 + 3 * DAY}-0"),  # opened last: first
        ("SUP1-1", "update", f"{T0 + DAY}-0"),
    ]
    a = alerts[0]
    assert a.supplier_id == "SUP3" and a.affected_skus == ("SKU1", "SKU2") and a.score == 27.0
    assert a.impacted_pairs[0].predicted_delay_days == 6.41 and a.evidence["late_pos"] == 21
    assert (a.opened_at, a.updated_at) == (T0 + 2 * DAY, T0 + 3 * DAY)
    assert [x.alert_id for x in reader.open_supply_alerts(limit=1)] == ["SUP3-1"]
    closing = _alert("SUP3-1", "closed", T0 + 4 * DAY)
    writer.write([closing, *book.update(closing.fields, closing.ms, closing.seq)])
    assert [x.alert_id for x in reader.open_supply_alerts()] == ["SUP1-1"]


def test_feature_vectors_keep_order_and_report_cold_starts(
    writer: RedisWriter, reader: RetailPulseReader
) -> None:
    _customers(writer)
    writer.write([
        _forecast("sku", "SKU1", 2.0, False), _forecast("sku_store", "SKU1:S1", 1.0, True),
        _forecast("sku_store", "SKU2:S1", 1.0, True), _reorder("SKU1", "S1", 11),
    ])  # fmt: skip
    fv = reader.customer_features(["C3", "new", "C1"])
    assert fv.names == CUSTOMER_FEATURES and fv.ids == ("C3", "new", "C1")
    assert fv.rows[0] == (0.1, 0.97, 19.8, 100.0, 10.0, 35.0) and fv.rows[1] is None
    assert fv.get("C1") == (0.42, 0.97, 19.8, 4649.55, round(0.42 * 4649.55, 2), 35.0)
    assert reader.customer_features([]).rows == ()

    chain = reader.sku_features(["SKU1", "SKU9"])
    assert chain.names == SKU_FEATURES and chain.rows[1] is None
    assert chain.rows[0] == (2.0, round(sum(2.0 * (1 + 0.1 * d) for d in range(7)), 6),
                             chain.rows[0][2], 1.0, 4.0, 3.0)  # fmt: skip
    local = reader.sku_features("SKU1", store="S1").as_dict()
    row = local["SKU1"]
    assert row is not None and len(row) == len(SKU_STORE_FEATURES)
    named = dict(zip(SKU_STORE_FEATURES, row, strict=True))
    assert (named["position"], named["reorder_signal"], named["reorder_point"]) == (11, 0, 7.397)
    assert named["days_of_cover"] == pytest.approx(11 / (named["demand_next_7d"] / 7))
    no_stock = reader.sku_features(["SKU2"], store="S1").rows[0]
    assert no_stock is not None and math.isnan(no_stock[SKU_STORE_FEATURES.index("on_hand")])


def test_reorder(writer: RedisWriter, reader: RetailPulseReader) -> None:
    writer.write([_reorder("SKU1", "S1", 3)])
    r = reader.reorder("SKU1", "S1")
    assert r is not None and r.signal and (r.position, r.lead_days, r.as_of) == (3, 19.86, T0)
    assert reader.reorder("SKU1", "S2") is None


def test_every_call_is_one_round_trip(
    writer: RedisWriter, redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    _customers(writer)
    writer.write([_forecast("sku_store", "SKU1:S1", 1.0, True), _reorder("SKU1", "S1", 3),
                  _alert("SUP1-1", "open", T0),
                  *OpenAlerts("alerts_open", "supply").update(_alert("SUP1-1", "open", T0).fields,
                                                              T0, 0)])  # fmt: skip
    client = redis.Redis.from_url(redis_url, connection_class=CountingConnection)
    rp = RetailPulseReader(client, prefix=key_prefix)  # bytes replies: parsed all the same
    client.ping()  # connect first: the handshake is not a read
    calls = {
        "customer": lambda: rp.customer("C2"),
        "forecast": lambda: rp.forecast("sku_store", "SKU1:S1"),
        "top": lambda: rp.top_churn_risks(10),
        "alerts": lambda: rp.open_supply_alerts(),
        "customer_features": lambda: rp.customer_features([f"C{i}" for i in range(50)]),
        "sku_features": lambda: rp.sku_features(["SKU1", "SKU2", "SKU3"], store="S1"),
        "reorder": lambda: rp.reorder("SKU1", "S1"),
    }
    try:
        for name, call in calls.items():
            before = CountingConnection.sent
            result = call()
            assert result, name
            assert CountingConnection.sent - before == 1, name
    finally:
        client.close()
    c2 = RetailPulseReader(redis_client, prefix=key_prefix).customer("C2")
    assert c2 is not None and c2.alerted  # a decode_responses client reads the same


def test_broken_values_and_unreachable_redis_raise_ours(
    reader: RetailPulseReader, redis_client: redis.Redis, key_prefix: str
) -> None:
    redis_client.hset(redis_key(key_prefix, "customer", "bad"), mapping={"churn_risk": "high"})
    with pytest.raises(DecodeError):
        reader.customer("bad")
    no_retry = Retry(NoBackoff(), 0)  # redis-py retries a refused connect by default
    dead = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=no_retry)
    with pytest.raises(InfraError) as info:
        RetailPulseReader(dead).customer("C1")
    assert isinstance(info.value.__cause__, redis.ConnectionError)
