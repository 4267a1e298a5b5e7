"""Scale-out: the same events run by one process and by a 2-process Bytewax cluster
(``cli_main`` with ``process_id`` / ``addresses``, as benchmarks/e2e_worker.py starts it)
leave the same Redis state, value for value (docs/event-time.md).

With two processes each reads half the partitions, and the model flows' one-key states get
the events over the network in yet another interleaving; their sequencers put them back in
one event-time order. Keys are routed by Bytewax (stable across processes); we route none.
Budget: ~20-40 s wall on 2 cores (a 20-day history; three short flow runs).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import redis

from infra.processes import free_port
from streams.kafka_io import create_topics
from streams.produce import EventProducer
from streams.runner import run
from streams.settings import Settings, load_settings
from streams.simulator import SimulationConfig, Simulator
from tests.helpers import redis_state

pytestmark = pytest.mark.integration

# One process of the cluster: the flow ``retailpulse run`` builds, under cli_main.
_CLUSTER_PROCESS = """
import json, sys
from streams.runner import run
from streams.settings import load_settings

overrides, pid, addresses = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
s = load_settings(env={}, overrides=overrides, use_embedded=False)
run(s, live=False, process_id=pid, addresses=addresses)  # what `retailpulse run --process-id`
"""


def _overrides(kafka: str, redis_url: str, topics: str, prefix: str) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap_servers": kafka},
        "redis": {"url": redis_url, "key_prefix": prefix, "retry_timeout_s": 20},
        "topics": {"prefix": f"{topics}.", "dead_letter": f"{topics}.dlq", "partitions": 2},
        "run": {"epoch_interval_s": 0.5, "batch_size": 50},
    }


# Kinds compared by key only: none since covers stopped moving the supply engine's clock
# (docs/event-time.md, "Still order dependent"). Kept so a regression can be named here.
SUPPLY: frozenset[str] = frozenset()


def _kind(key: str) -> str:
    return key.split(":")[2]


def _state(redis_url: str, prefix: str) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    try:
        return redis_state(client, prefix)
    finally:
        client.close()


def _single_run(
    kafka: str, redis_url: str, topics: str, prefix: str, sim: SimulationConfig
) -> dict[str, Any]:
    """Produce ``sim``'s history to new topics, run it in one process; its Redis state."""
    s: Settings = load_settings(
        env={}, overrides=_overrides(kafka, redis_url, topics, prefix), use_embedded=False
    )
    create_topics(s.kafka, s.topics)
    EventProducer(s).send_all(Simulator(sim).events())
    run(s, live=False)  # one process, one worker
    return _state(redis_url, s.redis.key_prefix)


def test_two_processes_leave_the_state_one_process_leaves(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
):
    tag = uuid.uuid4().hex[:6]
    topics = f"scale{tag}"
    single = _single_run(kafka_bootstrap, redis_url, topics, f"rpscale{tag}A",
                         SimulationConfig(seed=5, start_date=date(2024, 5, 1), days=20,
                                          skus=6, stores=2, customers=40))  # fmt: skip

    two = _overrides(kafka_bootstrap, redis_url, topics, f"rpscale{tag}B")
    procs, logs = _cluster(two, tmp_path / "run")
    try:
        _wait_ok(procs, logs)
    finally:
        _reap(procs)
    cluster = _state(redis_url, two["redis"]["key_prefix"])

    kinds = {k.split(":")[2] for k in single}
    assert {"customer", "forecast", "supplier", "leadtime", "ingest"} <= kinds, kinds
    assert single.keys() == cluster.keys()
    differ = sorted(k for k in single if single[k] != cluster[k] and _kind(k) not in SUPPLY)
    assert differ == [], (f"{len(differ)} keys differ, e.g. {differ[:5]}: "
                          f"{single[differ[0]]} != {cluster[differ[0]]}")  # fmt: skip


def test_cluster_flags_reach_the_runner_and_a_bad_index_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import streams.runner
    from streams import cli
    from streams.errors import ConfigError

    seen: list[dict[str, Any]] = []
    real_run = streams.runner.run
    monkeypatch.setattr(streams.runner, "run", lambda settings, live, **kw: seen.append(kw))
    argv = ["--state-dir", str(tmp_path), "run", "--process-id", "1",
            "--addresses", "10.0.0.1:2101, 10.0.0.2:2101"]  # fmt: skip
    assert cli.main(argv) == 0
    assert seen == [{"process_id": 1, "addresses": ["10.0.0.1:2101", "10.0.0.2:2101"]}]
    settings = load_settings(env={}, use_embedded=False)
    with pytest.raises(ConfigError, match=r"--process-id must be one of 0\.\.1"):
        real_run(settings, live=False, process_id=2, addresses=["a:1", "b:2"])


def _wait_ok(procs: list[Any], logs: list[Path]) -> None:
    """Every process of the cluster ends with exit code 0 (else: the end of its log)."""
    for proc, log in zip(procs, logs, strict=True):
        assert proc.wait(timeout=180) == 0, log.read_text(errors="replace")[-3000:]


def _reap(procs: list[Any]) -> None:
    """Kill what is still running: ours, by PID."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _merged(overrides: dict[str, Any], own: list[dict[str, Any]] | None, i: int) -> dict[str, Any]:
    mine = own[i] if own else {}
    return {**overrides, "run": {**overrides.get("run", {}), **mine.get("run", {})}}


def _resume_epochs(dbs: list[Path]) -> dict[int, int]:
    """Execution number -> the epoch it resumed from, over every partition file."""
    import sqlite3

    out: dict[int, int] = {}
    for part in sorted({f for db in dbs for f in db.glob("part-*.sqlite3")}):
        con = sqlite3.connect(f"file:{part}?mode=ro", uri=True)
        try:
            out.update(con.execute("SELECT ex_num, resume_epoch FROM exs").fetchall())
        finally:
            con.close()
    return out


def _commits(db: Path) -> int:
    from tests.test_recovery_kill import _commits as commits

    return commits(db)


def _cluster(
    overrides: dict[str, Any], logs: Path, own: list[dict[str, Any]] | None = None
) -> tuple[list[Any], list[Path]]:
    """Start both processes of a 2-process cluster; their logs are ``<logs>-p<i>.log``.

    ``own[i]`` (optional) holds ``run`` settings of process ``i`` only (its recovery dir).
    """
    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(2))
    procs, paths = [], []
    for i in range(2):
        path = logs.with_name(f"{logs.name}-p{i}.log")
        paths.append(path)
        with path.open("wb") as fh:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", _CLUSTER_PROCESS,
                 json.dumps(_merged(overrides, own, i)), str(i), addresses],
                stdout=fh, stderr=fh,
            ))  # fmt: skip
    return procs, paths


@pytest.mark.parametrize("layout", ["shared", "per_process"])
def test_a_killed_cluster_resumes_to_the_state_one_process_leaves(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path, layout: str
):
    # "shared": both processes use one recovery directory (created by whichever starts
    # first). "per_process": each has its own, as on two machines, each created on first
    # use with every partition. Kill -9 both after a few snapshots, start both again, and
    # the cluster ends where an uninterrupted single process ends.
    tag = uuid.uuid4().hex[:6]
    topics = f"scalerec{tag}"
    single = _single_run(kafka_bootstrap, redis_url, topics, f"rpsrec{tag}A",
                         SimulationConfig(seed=7, start_date=date(2024, 9, 1), days=40,
                                          skus=6, stores=2, customers=60))  # fmt: skip

    dbs = [tmp_path / "recovery"] * 2 if layout == "shared" else [
        tmp_path / f"machine{i}" / "recovery" for i in range(2)]  # fmt: skip
    base = _overrides(kafka_bootstrap, redis_url, topics, f"rpsrec{tag}B")
    two = {**base, "run": {**base["run"], "recovery_partitions": 2,
                           "snapshot_interval_s": 0.2}}  # fmt: skip
    own = [{"run": {"recovery_dir": str(db)}} for db in dbs]
    procs, _ = _cluster(two, tmp_path / "r0", own)
    try:
        deadline = time.monotonic() + 120
        # 4 epochs committed in all; with a directory each, some in every directory (the
        # two processes commit their partitions one after the other, not at once).
        each = 4 // len(set(dbs))
        while (any(_commits(db) < each for db in set(dbs))
               and all(p.poll() is None for p in procs)):  # fmt: skip
            assert time.monotonic() < deadline, "no snapshots"
            time.sleep(0.02)
        killed = all(p.poll() is None for p in procs)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
        assert killed, "the cluster finished before it could be killed: lengthen the history"
        procs, logs = _cluster(two, tmp_path / "r1", own)
        _wait_ok(procs, logs)
        # The second execution resumed from a snapshot (epoch > 1), not from the start.
        assert _resume_epochs(dbs).get(1, 0) > 1, _resume_epochs(dbs)
    finally:
        _reap(procs)
    resumed = _state(redis_url, two["redis"]["key_prefix"])
    assert single.keys() == resumed.keys()
    differ = sorted(k for k in single if single[k] != resumed[k] and _kind(k) not in SUPPLY)
    assert differ == [], f"{len(differ)} keys differ, e.g. {differ[:5]}"
    counted = sum(int(v[b"events"]) for k, v in resumed.items() if _kind(k) == "ingest")
    assert counted == sum(int(v[b"events"]) for k, v in single.items() if _kind(k) == "ingest")
