"""The embedded servers, their supervisor and the test-backend choice, for real.

Every server here listens on 127.0.0.1 on a free port and is stopped by its test, by PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import supervisor
from infra.embedded import EmbeddedKafka, EmbeddedRedis, ServerInfo
from infra.processes import free_port, kafka_answers, pid_alive, redis_answers
from streams.errors import InfraError
from tests import backends

ROOT = Path(__file__).resolve().parent.parent
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")


def wait_gone(*pids: int, timeout: float = 5.0) -> list[int]:
    """The pids still alive after ``timeout`` s (empty when all are gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


def wait_for_state(state_dir: Path, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> dict:
    path = state_dir / supervisor.STATE_FILE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        assert proc.poll() is None, f"supervisor exited with {proc.returncode}"
        time.sleep(0.05)
    raise AssertionError(f"no {path} after {timeout} s")


@pytest.fixture
def foreground_supervisor(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``up(detach=False)`` in a child interpreter (as `retailpulse infra up` would run)."""
    state_dir = tmp_path / "state"
    code = (
        "import sys; from pathlib import Path; from infra.supervisor import up; "
        "up(Path(sys.argv[1]), detach=False, "
        "on_ready=lambda s: print('READY', s.kafka.address, s.redis.address, flush=True))"
    )
    with (tmp_path / "out.txt").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(state_dir)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, state_dir
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        supervisor.down(state_dir)  # stops leftovers by PID, if a test failed half-way


# -- the servers -------------------------------------------------------------------------


@pytest.mark.integration
def test_kafka_and_redis_serve_and_stop_by_pid(tmp_path: Path) -> None:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    kafka, redis_server = EmbeddedKafka(log_dir=tmp_path), EmbeddedRedis(log_dir=tmp_path)
    try:
        k, r = kafka.start(), redis_server.start()
        assert (k.host, r.host) == ("127.0.0.1", "127.0.0.1")
        assert k.address == f"127.0.0.1:{k.port}"
        assert r.address == f"redis://127.0.0.1:{r.port}/0"

        topic = f"embedded.{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": k.address})
        for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
            future.result(timeout=10)
        producer = Producer({"bootstrap.servers": k.address})
        producer.produce(topic, key=b"k", value=b"hello")
        assert producer.flush(10) == 0
        consumer = Consumer(
            {
                "bootstrap.servers": k.address,
                "group.id": "embedded-test",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        # Explicit offset 0: OFFSET_BEGINNING costs Tansu a slow offset lookup.
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes | None] = []
        deadline = time.monotonic() + 15
        try:
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                error = msg.error()
                if error is None:
                    values.append(msg.value())
                elif error.code() == KafkaError._PARTITION_EOF and values:
                    break
        finally:
            consumer.close()
        assert values == [b"hello"]

        import redis

        client = redis.Redis.from_url(r.address)
        client.set("greeting", "hi")
        assert client.get("greeting") == b"hi"
        client.close()
        assert (tmp_path / "kafka.log").exists() and (tmp_path / "redis.log").exists()
    finally:
        redis_server.stop()
        kafka.stop()
    assert wait_gone(k.pid, r.pid) == []
    assert not kafka_answers(k.address, timeout=0.5) and not redis_answers(r.address, 0.5)
    redis_server.stop()  # idempotent
    with pytest.raises(InfraError, match="not running"):
        _ = kafka.info


@pytest.mark.integration
def test_context_manager_and_explicit_port() -> None:
    port = free_port()
    with EmbeddedRedis(port=port) as server:
        info = server.info
        assert info.port == port and redis_answers(info.address)
        # The port is ours now: a second server on it must refuse, clearly and quickly.
        with pytest.raises(InfraError, match="already in use"):
            EmbeddedRedis(port=port).start()
    assert wait_gone(info.pid) == []


@pytest.mark.integration
def test_a_server_that_dies_at_start_raises_with_its_log(tmp_path: Path) -> None:
    class BrokenRedis(EmbeddedRedis):
        def _command(self, binary: str, port: int, work_dir: Path) -> list[str]:
            return [*super()._command(binary, port, work_dir), "--no-such-option", "x"]

    with pytest.raises(InfraError) as raised:
        BrokenRedis(log_dir=tmp_path, startup_timeout=10).start()
    message = str(raised.value)
    assert "exited with code" in message and "no-such-option" in message
    assert str(tmp_path / "redis.log") in message


@pytest.mark.integration
def test_a_lost_port_race_is_retried_on_a_new_port(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra import embedded

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, free_port()])
        # As if someone bound the port between our probe and the server's own bind.
        monkeypatch.setattr(embedded, "free_port", lambda: next(ports))
        monkeypatch.setattr(embedded, "port_is_free", lambda port: True)
        server = EmbeddedRedis()
        try:
            info = server.start()
            assert info.port != taken and redis_answers(info.address)
        finally:
            server.stop()
    assert wait_gone(info.pid) == []


def test_server_info_round_trips() -> None:
    info = ServerInfo("kafka", 12, "127.0.0.1", 9092, "127.0.0.1:9092")
    assert ServerInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info


def test_a_bad_port_is_refused() -> None:
    with pytest.raises(InfraError, match="not a TCP port"):
        EmbeddedKafka(port=70000)


# -- the supervisor ----------------------------------------------------------------------


@pytest.mark.integration
def test_detached_up_status_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state = supervisor.up(state_dir, detach=True)
    try:
        pids = (state.supervisor_pid, state.kafka.pid, state.redis.pid)
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((state_dir / "infra.json").stat().st_mode) == 0o600
        assert supervisor.read_state(state_dir) == state
        report = supervisor.status(state_dir)
        assert report["running"] is True
        assert report["kafka"] == {"pid": pids[1], "address": state.kafka.address, "alive": True}
        assert report["redis"] == {"pid": pids[2], "address": state.redis.address, "alive": True}
        with pytest.raises(InfraError, match="already running"):
            supervisor.up(state_dir, detach=True)
    finally:
        stopped = supervisor.down(state_dir)
    assert stopped is True
    assert wait_gone(*pids) == []
    assert not (state_dir / "infra.json").exists()
    assert supervisor.down(state_dir) is False
    assert supervisor.status(state_dir)["running"] is False


@pytest.mark.integration
def test_foreground_supervisor_stops_everything_on_sigterm(foreground_supervisor) -> None:
    proc, state_dir = foreground_supervisor
    state = wait_for_state(state_dir, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert wait_gone(state["kafka"]["pid"], state["redis"]["pid"]) == []
    assert not (state_dir / "infra.json").exists()
    ready = f"READY {state['kafka']['address']} {state['redis']['address']}"
    assert ready in (state_dir.parent / "out.txt").read_text()  # on_ready ran once up


@linux_only
@pytest.mark.integration
def test_kill_9_of_the_supervisor_leaves_no_orphan_server(foreground_supervisor) -> None:
    proc, state_dir = foreground_supervisor
    state = wait_for_state(state_dir, proc)
    servers = (state["kafka"]["pid"], state["redis"]["pid"])
    assert all(pid_alive(p) for p in servers)
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    proc.wait(10)
    assert wait_gone(*servers, timeout=5) == []
    # The record it left behind is stale: reported, removed.
    assert supervisor.read_state(state_dir) is None
    assert not (state_dir / "infra.json").exists()


def test_a_stale_state_file_is_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = ServerInfo("redis", dead.pid, "127.0.0.1", 1, "redis://127.0.0.1:1/0")
    state = supervisor.StackState(dead.pid, gone, gone, "2024-01-01T00:00:00+00:00")
    (tmp_path / "infra.json").write_text(state.to_json())
    assert supervisor.StackState.from_json(state.to_json()) == state
    report = supervisor.status(tmp_path)
    assert report["running"] is False and report["stale_record_removed"] is True
    assert not (tmp_path / "infra.json").exists()
    assert supervisor.down(tmp_path) is False


# -- choosing the test backend -----------------------------------------------------------


def _docker(answer: bool):
    def probe() -> bool:
        return answer

    return probe


@pytest.mark.parametrize("docker", [True, False])
def test_an_env_named_server_wins(docker: bool) -> None:
    env = {backends.ENV_KAFKA: "broker:9092", backends.ENV_REDIS: "redis://r:6379/0"}
    assert backends.choose_backend("kafka", env, _docker(docker)) == "env"
    assert backends.choose_backend("redis", env, _docker(docker)) == "env"


def test_docker_means_testcontainers_else_embedded() -> None:
    assert backends.choose_backend("kafka", {}, _docker(True)) == "testcontainers"
    assert backends.choose_backend("redis", {}, _docker(True)) == "testcontainers"
    assert backends.choose_backend("kafka", {}, _docker(False)) == "embedded"
    assert backends.choose_backend("redis", {}, _docker(False)) == "embedded"


def test_each_kind_is_chosen_on_its_own() -> None:
    env = {backends.ENV_REDIS: "redis://r:6379/0", backends.ENV_KAFKA: "  "}
    chosen = {
        "kafka": backends.choose_backend("kafka", env, _docker(False)),
        "redis": backends.choose_backend("redis", env, _docker(False)),
    }
    assert chosen == {"kafka": "embedded", "redis": "env"}
    assert backends.describe(chosen) == "kafka=embedded,redis=env"
    assert backends.describe({"kafka": "embedded", "redis": "embedded"}) == "embedded"


def test_the_env_backend_starts_nothing() -> None:
    env = {backends.ENV_KAFKA: " broker:9092 ", backends.ENV_REDIS: "redis://u:pw@r:6379/1"}
    with backends.kafka_server("env", env) as kafka, backends.redis_server("env", env) as url:
        assert (kafka, url) == ("broker:9092", "redis://u:pw@r:6379/1")
    assert backends.redact(url) == "redis://u:***@r:6379/1"


def test_the_docker_probe_answers_a_bool_quickly() -> None:
    started = time.monotonic()
    assert isinstance(backends.docker_available(), bool)
    assert time.monotonic() - started < 5


@pytest.mark.integration
def test_the_session_fixtures_give_isolated_servers(
    kafka_bootstrap: str, redis_client, key_prefix: str, redis_backend: str, backend_name: str
) -> None:
    assert backend_name in {"env", "testcontainers", "embedded"} or "=" in backend_name
    assert kafka_answers(kafka_bootstrap, timeout=5)
    if redis_backend != "env":
        assert redis_client.dbsize() == 0  # flushed for this test
    redis_client.set(f"{key_prefix}:k", "v")
    assert redis_client.get(f"{key_prefix}:k") == "v"


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
