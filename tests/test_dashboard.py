"""The dashboard on a real Redis: JSON views, the SSE push, and that it never writes.

Keys are seeded with the real sink (``RedisWriter``, the same writes the flows make), and
the dashboard connects as a read-only ACL user: any write it tried would be refused and
show in ``ACL LOG``, which the tests check stays empty for that user.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from infra.redis_sink import RedisWriter
from processors.ingest import IngestTotals
from processors.writes import HashWrite, StreamAdd, ZSetWrite, ingest_writes
from streams.dashboard import DashboardServer, serve
from streams.settings import Settings

pytestmark = pytest.mark.integration

DAY = 86_400_000
BLACK_FRIDAY = 1_732_838_400_000  # 2024-11-29 00:00 UTC


def _forecast(as_of: int, actual: float, level_scale: float = 1.0) -> dict[str, Any]:
    mean = [round(level_scale * (10 + k), 3) for k in range(7)]
    bands = {"mean": mean, "p10": [m * 0.7 for m in mean], "p50": mean}
    bands["p90"] = [m * 1.3 for m in mean]
    fields = {k: json.dumps(v) for k, v in bands.items()}
    return {**fields, "model_version": 30, "as_of": as_of, "actual_last_day": actual}


def _alert(alert_id: str, status: str, skus: list[str], t: int) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "status": status,
        "supplier_id": alert_id.split("-")[0],
        "severity": "high" if status == "update" else "medium",
        "score": 12.5,
        "affected_skus": json.dumps(skus),
        "affected_stores": json.dumps(["S001"]),
        "impacted_pairs": json.dumps([[skus[0], "S001", 1.5, 4.0]]),
        "evidence": "{}",
        "opened_at": t,
        "updated_at": t,
    }


def _seed(writer: RedisWriter) -> None:
    totals = IngestTotals(500, 2, (("decode", 2),), BLACK_FRIDAY, (("t.orders:0", 502),))
    writer.write(ingest_writes(("orders", totals)))
    actuals = {"total:all": 95.0, "sku:SKU1": 4.0, "category:C1": 9.0, "store:S001": 40.0}
    actuals["sku_store:SKU1:S001"] = 2.0
    forecasts = [
        HashWrite("forecast", series, _forecast(BLACK_FRIDAY, actual, 5.0 if series == "total:all"
                  else 1.0), BLACK_FRIDAY, channel="forecast.changes")
        for series, actual in actuals.items()
    ]  # fmt: skip
    writer.write(
        [
            *forecasts,
            HashWrite("demand_score", "total:h1", {"n": 20, "mae": 3.0, "mase": 0.8}, BLACK_FRIDAY),
            HashWrite("demand_score", "sku:h7", {"n": 90, "mae": 1.0, "mase": 0.95}, BLACK_FRIDAY),
            HashWrite("churn", "metrics", {"labels": 50, "auc": 0.71, "ece": 0.04}, 50),
            HashWrite("supply_score", "leadtime", {"n": 9, "mae_days": 1.2}, BLACK_FRIDAY),
            HashWrite("customer", "C1", {"churn_risk": 0.9, "clv_365d": 300.0}, BLACK_FRIDAY),
            HashWrite("customer", "C2", {"churn_risk": 0.2, "clv_365d": 100.0}, BLACK_FRIDAY),
            ZSetWrite("churn", "value_at_risk", "C1", 270.0),
            ZSetWrite("churn", "value_at_risk", "C2", 20.0),
        ]
    )
    t = BLACK_FRIDAY - 3 * DAY
    writer.write(
        [
            _add(_alert("SUP1-1", "open", ["K1"], t), t, 0),
            _add(_alert("SUP1-1", "update", ["K1", "K2"], t), t, 1),
            _add(_alert("SUP2-1", "open", ["K3"], t + DAY), t + DAY, 0),
            _add(_alert("SUP1-1", "closed", ["K1", "K2"], t + 2 * DAY), t + 2 * DAY, 0),
        ]
    )


def _add(fields: dict[str, Any], ms: int, seq: int) -> StreamAdd:
    """A supply alert entry as the supply flow writes it (with its channel)."""
    return StreamAdd("alerts", "supply", fields, ms, seq, channel="alerts.supply")


@pytest.fixture
def readonly_settings(settings: Settings, redis_url: str) -> Iterator[Settings]:
    """The test's settings, but logged in as a fresh read-only ACL user."""
    user, password = f"rdonly-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = redis.Redis.from_url(redis_url)
    # The read-only user of docs/redis.md: read commands, SUBSCRIBE, PING; CLIENT SETINFO
    # only because redis-py sends it on connect (refused, it would clutter the ACL log).
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@read", "+subscribe",
        "+psubscribe", "+ping", "+info", "+client|setinfo",
    )  # fmt: skip
    url = redis_url.replace("redis://", f"redis://{user}:{password}@", 1)
    probe = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):  # the user really cannot write
        probe.set(f"{settings.redis.key_prefix}:probe", 1)
    probe.close()
    admin.execute_command("ACL", "LOG", "RESET")
    try:
        yield settings.replace(redis=dataclasses.replace(settings.redis, url=url))
        denied = [e for e in admin.execute_command("ACL", "LOG") if e[b"username"] == user.encode()]
        assert denied == [], (
            f"the dashboard tried commands its read-only user may not run: {denied}"
        )
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


@pytest.fixture
def writer(settings: Settings, redis_client: redis.Redis) -> Iterator[RedisWriter]:
    w = RedisWriter(settings.redis.require_url(), prefix=settings.redis.key_prefix)
    _seed(w)
    yield w
    w.close()


@pytest.fixture
def dash(readonly_settings: Settings, writer: RedisWriter) -> Iterator[DashboardServer]:
    server = serve(readonly_settings, "127.0.0.1", 0, tick_s=0.2, with_lag=False).start()
    try:
        yield server
    finally:
        server.stop()


def _get(server: DashboardServer, path: str) -> tuple[int, bytes, str]:
    where = urlsplit(server.url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Content-Type", "")
    finally:
        conn.close()


def _json(server: DashboardServer, path: str) -> Any:
    status, body, kind = _get(server, path)
    assert status == 200 and kind == "application/json", (path, status, body[:300])
    return json.loads(body)


class _EventStream:
    """A raw SSE client: ``next(name)`` returns the data of the next event with that name."""

    def __init__(self, server: DashboardServer, path: str) -> None:
        where = urlsplit(server.url)
        self.conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        assert self.resp.getheader("Content-Type") == "text/event-stream"

    def events(self) -> Iterator[tuple[str, Any]]:
        name, data = "", ""
        while True:
            line = self.resp.fp.readline()
            if not line:
                return
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                name = text[7:]
            elif text.startswith("data: "):
                data = text[6:]
            elif text == "" and name:
                yield name, json.loads(data)
                name, data = "", ""

    def next(self, wanted: str, where: Any = lambda d: True, limit: int = 500) -> Any:
        for i, (name, data) in enumerate(self.events()):
            if name == wanted and where(data):
                return data
            if i > limit:
                break
        raise AssertionError(f"no {wanted!r} event arrived")

    def close(self) -> None:
        self.conn.close()


def test_json_endpoints_show_what_the_flows_wrote(dash: DashboardServer):
    health = _json(dash, "/api/health")
    orders = next(f for f in health["families"] if f["family"] == "orders")
    assert orders["events"] == 500 and orders["dead_letters"] == 2
    assert orders["dead_letters_by_stage"] == {"decode": 2}

    listing = _json(dash, "/api/series/list")
    assert {"total", "sku", "category", "store", "sku_store"} <= set(listing["levels"])
    assert listing["nodes"]["sku_store"] == ["SKU1:S001"]

    series = _json(dash, "/api/series?level=sku&node=SKU1")
    assert series["forecast"]["mean"][:2] == [10.0, 11.0]
    assert series["forecast"]["as_of"] == BLACK_FRIDAY
    assert series["points"] == [
        {"as_of": BLACK_FRIDAY, "actual": 4.0, "mean": 10.0, "p10": 7.0, "p50": 10.0, "p90": 13.0}
    ]
    names = {m["name"] for m in series["calendar"]}
    assert {"black_friday", "cyber_monday"} <= names  # the holiday spikes are marked
    assert _json(dash, "/api/series?level=store&node=S404")["forecast"] is None

    churn = _json(dash, "/api/churn/top")
    assert [c["customer_id"] for c in churn["top"]] == ["C1", "C2"]
    assert churn["top"][0]["value_at_risk"] == 270.0 and churn["top"][0]["churn_risk"] == 0.9

    alerts = _json(dash, "/api/alerts")
    rows = {r["alert_id"]: r for r in alerts["alerts"]}
    assert rows["SUP1-1"]["state"] == "closed" and rows["SUP1-1"]["affected_skus"] == ["K1", "K2"]
    assert rows["SUP2-1"]["state"] == "open" and rows["SUP2-1"]["affected_skus"] == ["K3"]
    assert (alerts["open"], alerts["closed"]) == (1, 1)

    scores = _json(dash, "/api/scores")
    assert [(r["level"], r["h"], r["mase"]) for r in scores["demand"]] == [
        ("sku", 7, 0.95),
        ("total", 1, 0.8),
    ]
    assert scores["churn"]["auc"] == 0.71 and scores["supply"]["leadtime"]["mae_days"] == 1.2


def test_bad_requests_and_offline_assets(dash: DashboardServer):
    assert _get(dash, "/api/series?level=planet&node=x")[0] == 400
    assert _get(dash, "/events?series=nope:x")[0] == 400
    assert _get(dash, "/api/nothing")[0] == 400
    assert _get(dash, "/static/../server.py")[0] == 404
    status, page, kind = _get(dash, "/")
    assert status == 200 and kind.startswith("text/html")
    assert b'src="/assets/plotly.min.js"' in page and b"http" not in page.split(b"<body>")[0]
    status, js, _ = _get(dash, "/assets/plotly.min.js")
    assert status == 200 and len(js) > 1_000_000 and b"plotly.js" in js[:2000]
    for name in ("app.js", "style.css"):
        assert _get(dash, f"/static/{name}")[0] == 200


def test_new_alert_and_forecast_are_pushed_without_polling(
    dash: DashboardServer, writer: RedisWriter
):
    # As the page does: the series' initial state, then its event stream.
    assert len(_json(dash, "/api/series?level=total&node=all")["points"]) == 1
    stream = _EventStream(dash, "/events?series=total:all")
    try:
        assert "families" in stream.next("hello")
        t = BLACK_FRIDAY + DAY
        writer.write([_add(_alert("SUP3-9", "open", ["K7", "K8"], t), t, 0)])
        row = stream.next("alert")
        assert row["alert_id"] == "SUP3-9" and row["state"] == "open"
        assert row["affected_skus"] == ["K7", "K8"]

        fc = "forecast.changes"
        writer.write(
            [
                HashWrite("forecast", "sku:SKU1", _forecast(t, 7.0), t, channel=fc),  # not ours
                HashWrite("forecast", "total:all", _forecast(t, 120.0, 5), t, channel=fc),
            ]
        )
        pushed = stream.next("forecast")
        assert pushed["series"] == "total:all" and pushed["forecast"]["as_of"] == t
        assert pushed["points"][-1]["actual"] == 120.0

        health = stream.next("health")
        assert health["notifications"]["forecast"] >= 2 and health["alerts_open"] == 2
    finally:
        stream.close()
    # Both live days are now in the series' history, newest last.
    points = _json(dash, "/api/series?level=total&node=all")["points"]
    assert [p["as_of"] for p in points] == [BLACK_FRIDAY, t]
    assert _json(dash, "/api/alerts")["open"] == 2


def test_health_shows_events_per_second_from_growing_counts(
    dash: DashboardServer, writer: RedisWriter
):
    stream = _EventStream(dash, "/events")
    try:
        stream.next("hello")
        n = 500
        for i in range(1, 40):
            n += 1000
            totals = IngestTotals(n, 2, (("decode", 2),), BLACK_FRIDAY + i, (("t.orders:0", n),))
            writer.write(ingest_writes(("orders", totals)))
            health = stream.next("health")
            orders = next(f for f in health["families"] if f["family"] == "orders")
            if orders["events"] == n and orders["events_per_s"] > 0:
                break
        assert orders["events_per_s"] > 0, health
    finally:
        stream.close()


def test_stop_ends_open_event_streams_and_frees_the_port(readonly_settings, writer):
    server = serve(readonly_settings, "127.0.0.1", 0, with_lag=False).start()
    stream = _EventStream(server, "/events?series=sku:SKU1")
    stream.next("hello")
    server.stop()
    for _ in stream.events():  # ends (EOF) once the server closed it; a hang would time out
        pass
    stream.close()
    port = urlsplit(server.url).port
    again = serve(readonly_settings, "127.0.0.1", port or 0, with_lag=False)  # rebinds
    again.httpd.server_close()
    again.client.close()


def test_series_history_keeps_every_day_of_a_burst(dash: DashboardServer, writer: RedisWriter):
    """Many notifications at once (a bounded run publishes a day for every series)."""
    fc = "forecast.changes"
    assert len(_json(dash, "/api/series?level=total&node=all")["points"]) == 1
    days = [BLACK_FRIDAY + k * DAY for k in range(1, 31)]
    for k, t in enumerate(days):  # one batch each: the sink keeps only a key's newest write
        writer.write(
            [HashWrite("forecast", "total:all", _forecast(t, 100.0 + k, 5), t, channel=fc)]
        )
    deadline = time.monotonic() + 20
    points: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        points = _json(dash, "/api/series?level=total&node=all")["points"]
        if len(points) == 31:
            break
        time.sleep(0.1)
    assert [p["as_of"] for p in points] == [BLACK_FRIDAY, *days]
    assert points[-1]["actual"] == 129.0


def test_stored_history_is_merged_when_the_demand_flow_writes_it(
    dash: DashboardServer, writer: RedisWriter
):
    """The proposed per-day layout (docs/dashboard.md) fills the chart's past."""
    days = [BLACK_FRIDAY - k * DAY for k in (3, 2, 1)]
    writes: list[Any] = []
    for i, t in enumerate(days):
        row = json.dumps([3.0 + i, 5.0, 2.0, 5.0, 8.0])
        writes.append(HashWrite("demand_day", f"sku:{t}", {"SKU1": row, "SKU2": "[1]"}, t))
        writes.append(ZSetWrite("demand_days", "index", str(t), t))
    writer.write(writes)
    points = _json(dash, "/api/series?level=sku&node=SKU1")["points"]
    assert [(p["as_of"], p["actual"], p["p90"]) for p in points] == [
        (days[0], 3.0, 8.0),
        (days[1], 4.0, 8.0),
        (days[2], 5.0, 8.0),
        (BLACK_FRIDAY, 4.0, 13.0),  # from the forecast hash (actual_last_day, p90[0])
    ]


_CLI = """
import argparse, sys
from streams.dashboard.cli import add_dashboard_parser
from streams.settings import load_settings

parser = argparse.ArgumentParser()
add_dashboard_parser(parser.add_subparsers(dest="command"))
args = parser.parse_args(["dashboard", "--port", "0", "--no-lag"])
settings = load_settings(
    env={}, overrides={"redis": {"url": sys.argv[1], "key_prefix": sys.argv[2]}},
    use_embedded=False,
)
sys.exit(args.func(args, settings))
"""


def test_command_serves_until_sigterm(readonly_settings: Settings, writer: RedisWriter):
    """``retailpulse dashboard`` (its parser and function): prints the URL, stops on SIGTERM."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CLI,
            readonly_settings.redis.url,
            readonly_settings.redis.key_prefix,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert first.startswith("dashboard: http://127.0.0.1:"), first
        url = first.split()[1]
        where = urlsplit(url)
        conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
        conn.request("GET", "/api/health")
        assert json.loads(conn.getresponse().read())["redis"] == "ok"
        conn.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "dashboard stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
