"""The recovery store's manifest: created on first use (0700), refused when incompatible.

Also the settings and `run` flags that turn recovery on, the dead-letter dedup logic, and a
check that every class found in real snapshots declares a STATE_VERSION.
"""

from __future__ import annotations

import io
import json
import pickle
import sqlite3
import stat
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from processors.records import DeadLetter, SourceRecord
from streams.errors import ConfigError
from streams.kafka_io import _DeadLetterPartition, dead_letter_id
from streams.recovery import (
    MANIFEST_NAME,
    RecoveryManifest,
    build_manifest,
    flow_step_ids,
    prepare_recovery,
    recovery_config,
    state_versions,
)
from streams.settings import RunSettings, load_settings

TOPICS = ("t.orders", "t.stores")
VERSIONS = {"processors.x.Engine": 1}


def tiny_flow(flow_id: str = "retailpulse", state_step: str = "acc") -> Dataflow:
    flow = Dataflow(flow_id)
    s = op.input("kafka_in", flow, TestingSource([1, 2, 3]))
    keyed = op.key_on("key", s, lambda x: "all")
    acc = op.stateful_map(state_step, keyed, lambda st, x: ((st or 0) + x, (st or 0) + x))
    op.output("redis_out", acc, TestingSink([]))
    return flow


def manifest(
    flow: Dataflow, *, topics: Any = TOPICS, parts: int = 1, versions: Any = None, shards: int = 1
):
    return build_manifest(
        flow, topics, parts, VERSIONS if versions is None else versions, shards=shards
    )


def fresh(tmp_path: Path, flow: Dataflow | None = None, parts: int = 1) -> Path:
    flow = flow or tiny_flow()
    return prepare_recovery(tmp_path / "rec", flow, manifest(flow, parts=parts))


# -- happy path ---------------------------------------------------------------------------


def test_first_use_creates_a_private_store_with_its_manifest(tmp_path: Path):
    db = fresh(tmp_path, parts=2)
    assert stat.S_IMODE(db.stat().st_mode) == 0o700
    names = {p.name for p in db.iterdir()}
    assert names == {MANIFEST_NAME, "part-0.sqlite3", "part-1.sqlite3"}
    saved = json.loads((db / MANIFEST_NAME).read_text())
    assert saved["flow_id"] == "retailpulse"
    assert saved["step_ids"] == ["kafka_in", "key", "acc", "redis_out"]
    assert saved["topics"] == sorted(TOPICS) and saved["partitions"] == 2
    assert saved["state_versions"] == VERSIONS
    assert stat.S_IMODE((db / MANIFEST_NAME).stat().st_mode) == 0o600


def test_same_flow_resumes_and_bytewax_restores_its_state(tmp_path: Path):
    from bytewax.recovery import RecoveryConfig

    db = fresh(tmp_path)
    flow = tiny_flow()
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    # The manifest next to the partitions does not bother Bytewax; the same flow passes.
    again = tiny_flow()
    assert prepare_recovery(db, again, manifest(again)) == db
    out: list[Any] = []
    flow3 = Dataflow("retailpulse")
    s = op.input("kafka_in", flow3, TestingSource([1, 2, 3]))
    keyed = op.key_on("key", s, lambda x: "all")
    acc = op.stateful_map("acc", keyed, lambda st, x: ((st or 0) + x, (st or 0) + x))
    op.output("redis_out", acc, TestingSink(out))
    run_main(flow3, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    assert out == []  # the input's snapshot says it is finished: nothing is read twice


def test_a_refused_start_leaves_the_store_untouched(tmp_path: Path):
    db = fresh(tmp_path)
    before = (db / MANIFEST_NAME).read_text()
    other = tiny_flow(state_step="acc2")
    with pytest.raises(ConfigError):
        prepare_recovery(db, other, manifest(other))
    assert (db / MANIFEST_NAME).read_text() == before


# -- refusals ---------------------------------------------------------------------------


def refusal(db: Path, flow: Dataflow, m: RecoveryManifest) -> str:
    with pytest.raises(ConfigError) as info:
        prepare_recovery(db, flow, m)
    text = str(info.value)
    assert "rebuild by replay" in text and f"mv {db} {db}.old" in text
    return text


def test_renamed_step_is_refused_naming_both_ids(tmp_path: Path):
    db = fresh(tmp_path)
    flow = tiny_flow(state_step="demand_engine")
    text = refusal(db, flow, manifest(flow))
    assert "step 'acc' is in the recovery store but not in this flow" in text
    assert "step 'demand_engine' is in this flow but not in the recovery store" in text
    assert "silently discarded" in text


def test_changed_dataflow_id_is_refused(tmp_path: Path):
    db = fresh(tmp_path)
    flow = tiny_flow(flow_id="retailpulse2")
    text = refusal(db, flow, manifest(flow))
    assert "the dataflow id is 'retailpulse2' but the recovery store was written by " \
           "'retailpulse'" in text  # fmt: skip


def test_changed_topic_set_is_refused(tmp_path: Path):
    db = fresh(tmp_path)
    flow = tiny_flow()
    text = refusal(db, flow, manifest(flow, topics=("t.orders", "t.returns")))
    assert "input topic 't.stores' is in the recovery store but not in this flow" in text
    assert "input topic 't.returns' is in this flow but not in the recovery store" in text


def test_changed_partition_count_is_refused(tmp_path: Path):
    db = fresh(tmp_path, parts=2)
    flow = tiny_flow()
    text = refusal(db, flow, manifest(flow, parts=3))
    assert "has 2 partition(s) but run.recovery_partitions is 3" in text


def test_changed_shard_count_is_refused(tmp_path: Path):
    """Stores, customers and blocks map to shard keys by count: a new count moves them."""
    db = fresh(tmp_path)
    flow = tiny_flow()
    text = refusal(db, flow, manifest(flow, shards=12))
    assert "written with 1 shard(s) but run.shards is 12" in text


def test_missing_partition_file_is_refused(tmp_path: Path):
    db = fresh(tmp_path, parts=2)
    (db / "part-1.sqlite3").unlink()
    flow = tiny_flow()
    assert "the manifest names 2 partition(s) but the directory holds 1" in refusal(
        db, flow, manifest(flow, parts=2)
    )


def test_bumped_state_version_is_refused(tmp_path: Path):
    db = fresh(tmp_path)
    flow = tiny_flow()
    text = refusal(db, flow, manifest(flow, versions={"processors.x.Engine": 2}))
    assert "state class processors.x.Engine is version 2 in this code but version 1" in text
    text = refusal(db, flow, manifest(flow, versions={}))
    assert "state class processors.x.Engine (version 1) is in the recovery store but not" in text


def test_snapshots_of_an_unknown_step_are_refused_even_if_the_manifest_agrees(tmp_path: Path):
    from bytewax.recovery import RecoveryConfig

    db = fresh(tmp_path)
    run_main(tiny_flow(), epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    other = tiny_flow(state_step="acc2")
    (db / MANIFEST_NAME).write_text(manifest(other).to_json())  # a hand-edited manifest
    text = refusal(db, other, manifest(other))
    assert "holds state of step 'retailpulse.acc.stateful_flat_map" in text


def test_snapshots_without_a_manifest_are_refused(tmp_path: Path):
    from bytewax.recovery import RecoveryConfig

    db = fresh(tmp_path)
    run_main(tiny_flow(), epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    (db / MANIFEST_NAME).unlink()
    flow = tiny_flow()
    assert f"holds Bytewax snapshots but no {MANIFEST_NAME}" in refusal(db, flow, manifest(flow))


def test_an_unrelated_directory_is_not_taken_over(tmp_path: Path):
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "notes.txt").write_text("mine")
    flow = tiny_flow()
    with pytest.raises(ConfigError, match="not empty and is not a recovery store"):
        prepare_recovery(tmp_path / "rec", flow, manifest(flow))


def test_unreadable_manifest_is_a_config_error(tmp_path: Path):
    db = fresh(tmp_path)
    (db / MANIFEST_NAME).write_text("{not json")
    flow = tiny_flow()
    with pytest.raises(ConfigError, match="unreadable"):
        prepare_recovery(db, flow, manifest(flow))


# -- settings, CLI, runner -------------------------------------------------------------


def test_settings_from_env_and_toml(tmp_path: Path):
    s = load_settings(
        env={
            "RETAILPULSE_RUN_RECOVERY_DIR": str(tmp_path / "r"),
            "RETAILPULSE_RUN_RECOVERY_PARTITIONS": "3",
            "RETAILPULSE_RUN_SNAPSHOT_INTERVAL_S": "0.5",
            "RETAILPULSE_RUN_BACKUP_INTERVAL_S": "60",
        },
        use_embedded=False,
    ).run
    assert s.recovery_dir == tmp_path / "r" and isinstance(s.recovery_dir, Path)
    assert (s.recovery_partitions, s.snapshot_interval_s, s.backup_interval_s) == (3, 0.5, 60.0)
    assert s.effective_epoch_interval_s == 0.5
    off = load_settings(env={"RETAILPULSE_RUN_RECOVERY_DIR": ""}, use_embedded=False).run
    assert off.recovery_dir is None and off.effective_epoch_interval_s == 10.0
    toml = tmp_path / "s.toml"
    toml.write_text('[run]\nrecovery_dir = "/var/lib/rp"\nepoch_interval_s = 2.0\n')
    s2 = load_settings(config_file=toml, env={}, use_embedded=False).run
    assert s2.recovery_dir == Path("/var/lib/rp") and s2.effective_epoch_interval_s == 2.0


def test_run_flags_reach_the_runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import streams.runner
    from streams import cli

    seen: list[Any] = []
    monkeypatch.setattr(streams.runner, "run", lambda settings, live, **_kw: seen.append(settings))
    for var in ("RETAILPULSE_RUN_RECOVERY_DIR", "RETAILPULSE_RUN_SNAPSHOT_INTERVAL_S"):
        monkeypatch.delenv(var, raising=False)
    argv = ["--state-dir", str(tmp_path), "run", "--recovery-dir", str(tmp_path / "r"),
            "--recovery-partitions", "2", "--snapshot-interval", "0.25",
            "--backup-interval", "30"]  # fmt: skip
    assert cli.main(argv) == 0
    run = seen[0].run
    assert run.recovery_dir == tmp_path / "r" and run.recovery_partitions == 2
    assert run.effective_epoch_interval_s == 0.25 and run.backup_interval_s == 30.0


def test_recovery_off_by_default_and_bad_intervals_refused(tmp_path: Path):
    flow = tiny_flow()
    assert recovery_config(RunSettings(), flow, TOPICS) is None
    with pytest.raises(ConfigError, match="must be > 0"):
        recovery_config(RunSettings(recovery_dir=tmp_path, snapshot_interval_s=0), flow, TOPICS)
    with pytest.raises(ConfigError, match="recovery_partitions must be >= 1"):
        recovery_config(RunSettings(recovery_dir=tmp_path / "x", recovery_partitions=0), flow,
                        TOPICS)  # fmt: skip


def test_manifest_step_ids_come_from_the_real_built_flow():
    from streams.flows import default_extensions
    from streams.settings import Settings
    from tests.helpers import offline_flow

    built = offline_flow([], default_extensions(Settings()))
    steps = flow_step_ids(built.flow)
    for step in ("kafka_in", "ingest_totals", "demand_engine", "customers_book",
                 "supply_state", "redis_out"):  # fmt: skip
        assert step in steps


# -- dead letters ----------------------------------------------------------------------


class _FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[tuple[str, bytes]]]] = []
        self.flushed = 0

    def produce(self, topic: str, value: Any, *, key: Any = None, headers: Any = None) -> None:
        self.sent.append((topic, headers))

    def flush_or_raise(self) -> None:
        self.flushed += 1


def _dl(offset: int) -> DeadLetter:
    return DeadLetter(SourceRecord("t.orders", 1, offset, b"k", b"x"), "orders", "decode",
                      "DecodeError", "bad")  # fmt: skip


def test_dead_letters_already_on_the_topic_are_not_written_again():
    on_topic = {dead_letter_id(_dl(5).headers()), dead_letter_id(_dl(7).headers())}
    assert on_topic == {("t.orders", 1, 5), ("t.orders", 1, 7)}
    producer = _FakeProducer()
    part = _DeadLetterPartition(producer, "dlq", on_topic)  # type: ignore[arg-type]
    part.write_batch([_dl(5), _dl(6), _dl(7), _dl(8)])
    assert [dead_letter_id(h) for _, h in producer.sent] == [("t.orders", 1, 6),
                                                             ("t.orders", 1, 8)]  # fmt: skip
    part.write_batch([_dl(6), _dl(9)])  # written in this run: also skipped
    assert [dead_letter_id(h) for _, h in producer.sent][-1] == ("t.orders", 1, 9)
    assert len(producer.sent) == 3 and producer.flushed == 2


def test_dead_letter_id_ignores_foreign_or_damaged_headers():
    assert dead_letter_id(None) is None
    assert dead_letter_id([("rp.dlq.topic", b"t"), ("rp.dlq.partition", b"x"),
                           ("rp.dlq.offset", b"1")]) is None  # fmt: skip
    assert dead_letter_id({"rp.dlq.topic": "t", "rp.dlq.partition": "0",
                           "rp.dlq.offset": "3"}) == ("t", 0, 3)  # fmt: skip


# -- every class in real snapshots declares a STATE_VERSION ----------------------------


class _Recorder(pickle.Unpickler):
    def __init__(self, blob: bytes, seen: set[str]) -> None:
        super().__init__(io.BytesIO(blob))
        self.seen = seen

    def find_class(self, module: str, name: str) -> Any:
        self.seen.add(f"{module}.{name}")
        return super().find_class(module, name)


def _classes_in(blob: bytes, seen: set[str]) -> None:
    obj = _Recorder(blob, seen).load()
    if isinstance(obj, bytes) and obj[:1] == b"\x80":  # supply steps snapshot a pickle
        _classes_in(obj, seen)


def test_every_class_in_real_snapshots_has_a_state_version(tmp_path: Path):
    """If this fails, add ``STATE_VERSION = 1`` to the class it names (docs/recovery.md)."""
    from bytewax.recovery import RecoveryConfig, init_db_dir

    from streams.dataflow import build_flow
    from streams.flows import default_extensions
    from streams.registry import ManifestResolver, SchemaCatalog
    from streams.settings import Settings
    from streams.simulator import SimulationConfig, Simulator
    from tests.helpers import sim_messages

    sim = Simulator(SimulationConfig(seed=3, start_date=date(2024, 1, 1), days=40, skus=10,
                                     stores=2, customers=40))  # fmt: skip
    s = Settings()
    built = build_flow(
        s,
        ManifestResolver(SchemaCatalog.load()),
        tail=False,
        source=TestingSource(sim_messages(sim.events()), batch_size=100),
        dead_letter_sink=TestingSink([]),
        redis_sink=TestingSink([]),
        extensions=default_extensions(s),
    )
    db = tmp_path / "db"
    db.mkdir()
    init_db_dir(db, 1)
    run_main(built.flow, epoch_interval=timedelta(seconds=0.05),
             recovery_config=RecoveryConfig(db))  # fmt: skip
    seen: set[str] = set()
    con = sqlite3.connect(db / "part-0.sqlite3")
    for (blob,) in con.execute("SELECT ser_change FROM snaps WHERE ser_change IS NOT NULL"):
        _classes_in(blob, seen)
    con.close()
    ours = {c for c in seen if c.startswith(("processors.", "models.", "streams."))}
    assert "processors.demand_engine.DemandEngine" in ours  # the scan sees the engines
    assert sorted(ours - set(state_versions())) == []
