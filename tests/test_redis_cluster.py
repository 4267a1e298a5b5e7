"""The sink and the read API against a real 3-node Valkey Cluster on 127.0.0.1.

One cluster for the module (started and stopped here, by PID): every write kind lands, the
version guard holds, pub/sub reaches a subscriber on another node, the reader reads the
values back, keys spread over several nodes, and a node restarted empty is detected by its
own marker and rewritten from the mirror.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from infra.cluster import LocalRedisCluster, cluster_url, connect, is_cluster_url
from infra.processes import pid_alive
from infra.redis_sink import RedisWriter, channel_name, redis_key
from infra.serving import RetailPulseReader
from processors.open_alerts import OpenAlerts
from processors.writes import HashWrite, StreamAdd, ZSetWrite
from streams.errors import ConfigError
from streams.settings import RedisSettings, load_settings

pytestmark = pytest.mark.integration

T0 = 1_740_614_400_000
PREFIX = "rpc"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    with LocalRedisCluster(Path(tmp_path_factory.mktemp("cluster")), nodes=3) as c:
        pids = c.pids
        yield c
    assert len(pids) == 3 and not any(pid_alive(pid) for pid in pids)


@pytest.fixture
def client(cluster: LocalRedisCluster) -> Iterator[RedisCluster]:
    c = connect(cluster.url, decode_responses=True)
    assert isinstance(c, RedisCluster)
    yield c
    c.close()


def _batch() -> list[HashWrite | StreamAdd | ZSetWrite]:
    """One write of every kind, several customers so that keys fall on several slots."""
    writes: list[HashWrite | StreamAdd | ZSetWrite] = []
    for i in range(12):
        fields = {"churn_risk": 0.1 * i, "p_alive": 0.9, "expected_purchases_90d": 1.5,
                  "clv_365d": 100.0 + i, "value_at_risk": 10.0 * i, "orders": i,
                  "horizon_days": 90, "as_of": T0, "top_features": "[]"}  # fmt: skip
        writes.append(HashWrite("customer", f"C{i}", fields, T0, channel="customers"))
        writes.append(ZSetWrite("churn", "value_at_risk", f"C{i}", 10.0 * i))
    alert = {"alert_id": "A1", "status": "open", "supplier_id": "SUP1", "severity": "high",
             "score": 9.5, "opened_at": T0, "updated_at": T0}  # fmt: skip
    writes.append(StreamAdd("alerts", "supply", alert, T0, 0, channel="alerts"))
    writes.extend(OpenAlerts("alerts_open", "supply").update(alert, T0, 0))
    return writes


def test_urls_and_settings_select_the_cluster_client() -> None:
    assert is_cluster_url("redis+cluster://h:1") and not is_cluster_url("redis://h:1")
    assert cluster_url("rediss://u:p@h:1/0") == "rediss+cluster://u:p@h:1/0"
    with pytest.raises(ConfigError):
        cluster_url("unix:///tmp/r.sock")
    assert RedisSettings(url="redis://h:1/0", cluster=True).require_url().startswith("redis+")
    assert RedisSettings(url="redis://h:1/0").require_url() == "redis://h:1/0"
    env = {"RETAILPULSE_REDIS_URL": "redis://h:1/0", "RETAILPULSE_REDIS_CLUSTER": "true"}
    settings = load_settings(env=env, use_embedded=False)
    assert settings.redis.require_url() == "redis+cluster://h:1/0"
    assert settings.describe()["redis"]["cluster"] is True


def test_the_sink_and_reader_work_on_a_cluster(
    cluster: LocalRedisCluster, client: RedisCluster
) -> None:
    sub = client.pubsub()
    # PUBLISH is broadcast to every node: a subscriber on any one node hears it.
    node = client.get_node_from_key(redis_key(PREFIX, "customer", "C0"))
    other = next(n for n in client.get_primaries() if n.name != node.name)
    plain = redis.Redis(host=other.host, port=other.port, decode_responses=True)
    ps = plain.pubsub()
    ps.subscribe(channel_name(PREFIX, "customers"), channel_name(PREFIX, "alerts"))
    ps.get_message(timeout=1.0)
    ps.get_message(timeout=1.0)

    writer = RedisWriter(cluster.url, prefix=PREFIX, retry_timeout_s=5)
    try:
        assert writer.write(_batch()) == 26  # 12 + 12 + alert + its open member
        assert len(writer.markers) == 3  # one per primary
        nodes = {client.get_node_from_key(m).name for m in writer.markers}
        assert nodes == {n.name for n in client.get_primaries()}
        # The version guard: an older write is skipped, an equal one does not re-notify.
        stale = HashWrite("customer", "C1", {"churn_risk": 0.99}, T0 - 1, channel="customers")
        writer.write([stale, StreamAdd("alerts", "supply", {"status": "x"}, T0 - 5)])
        writer.write([HashWrite("customer", "C2", {"orders": 2}, T0, channel="customers")])
    finally:
        writer.close()

    got = []
    deadline = time.monotonic() + 5
    while len(got) < 13 and time.monotonic() < deadline:
        m = ps.get_message(timeout=0.5)
        if m and m["type"] == "message":
            got.append(json.loads(m["data"]))
    ps.close()
    plain.close()
    sub.close()
    assert len(got) == 13  # 12 customers + 1 alert; the stale and equal writes sent nothing
    assert {g["key"] for g in got if "alert_id" in g} == {redis_key(PREFIX, "alerts", "supply")}

    key = redis_key(PREFIX, "customer", "C1")
    assert client.hget(key, "churn_risk") == "0.1"  # not the stale 0.99
    assert client.xlen(redis_key(PREFIX, "alerts", "supply")) == 1
    keys = [redis_key(PREFIX, "customer", f"C{i}") for i in range(12)]
    assert len({client.get_node_from_key(k).name for k in keys}) > 1

    with RetailPulseReader(cluster.url, prefix=PREFIX) as rp:
        c1 = rp.customer("C1")
        assert c1 is not None and c1.churn_risk == pytest.approx(0.1) and c1.orders == 1
        assert [r.customer_id for r in rp.top_churn_risks(3)] == ["C11", "C10", "C9"]
        fv = rp.customer_features(["C3", "C7", "nobody"])  # keys on several nodes
        assert fv.get("C7") is not None and fv.get("nobody") is None
        assert [a.alert_id for a in rp.open_supply_alerts()] == ["A1"]
        assert rp.ping()


def test_a_node_restarted_empty_is_rewritten(
    cluster: LocalRedisCluster, client: RedisCluster
) -> None:
    """FLUSHALL + SCRIPT FLUSH on one node is what a restart without persistence leaves."""
    writer = RedisWriter(cluster.url, prefix=f"{PREFIX}r", retry_timeout_s=5)
    try:
        writer.write(_batch())
        keys = [redis_key(f"{PREFIX}r", "customer", f"C{i}") for i in range(12)]
        victim = client.get_node_from_key(keys[0])
        on_victim = [k for k in keys if client.get_node_from_key(k).name == victim.name]
        plain = redis.Redis(host=victim.host, port=victim.port)
        plain.flushall()
        plain.script_flush()
        plain.close()
        assert not any(client.exists(k) for k in on_victim)
        writer.write([HashWrite("ingest", "orders", {"events": 1}, 1)])
        assert writer.restores == 1
        assert all(client.exists(k) for k in on_victim)
        assert client.hget(keys[0], "orders") == "0"
    finally:
        writer.close()
