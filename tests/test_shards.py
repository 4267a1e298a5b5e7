"""Logical shards (processors/shards.py): placement on Bytewax workers, and results that do
not depend on the number of shards."""

from __future__ import annotations

import dataclasses
import threading
from datetime import date
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main

from infra.redis_sink import RedisWriter
from processors.shards import Shards, worker_of
from streams.errors import ConfigError
from streams.flows import default_extensions
from streams.settings import RunSettings, Settings
from streams.simulator import SimulationConfig, Simulator
from tests import helpers


def _threads_of(keys: list[str], workers: int) -> dict[str, str]:
    """key -> the name of the worker thread Bytewax ran its state on (one process)."""
    seen: list[tuple[str, str]] = []
    flow = Dataflow("placement")
    s = op.input("in", flow, TestingSource([(k, 1) for k in keys]))
    where = op.stateful_map("where", s, lambda _st, _v: (None, threading.current_thread().name))
    op.output("out", where, TestingSink(seen))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return dict(seen)


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_predicted_placement_is_where_bytewax_runs_each_key(workers: int):
    shards = Shards(12)
    keys = [*shards.keys("demand_publish"), *shards.keys("supply_cover"),
            *(f"store:ST{i:03d}" for i in range(20)),
            shards.engine_key("demand", 0), shards.engine_key("customers", 1)]  # fmt: skip
    threads = _threads_of(keys, workers)
    # Every thread runs the keys of exactly one predicted worker, and each worker has one.
    predicted: dict[str, set[int]] = {}
    for k in keys:
        predicted.setdefault(threads[k], set()).add(worker_of(k, workers))
    assert all(len(ws) == 1 for ws in predicted.values())
    assert set().union(*predicted.values()) == set(range(workers))


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 6, 12])
def test_each_worker_gets_an_equal_share_of_every_sharded_step(workers: int):
    shards = Shards(12)
    for step in ("demand_publish", "supply_cover"):
        per_worker = [worker_of(k, workers) for k in shards.keys(step)]
        assert sorted(per_worker) == sorted(list(range(workers)) * (12 // workers))


def test_engines_run_apart_and_entities_map_stably():
    from streams.flows import customers, demand, supply

    shards = Shards(12)
    slots = {"demand": demand.ENGINE_SLOT, "supply": supply._ENGINE_SLOT,
             "customers": customers.ENGINE_SLOT}  # fmt: skip
    where = {w: {n: worker_of(shards.engine_key(n, s), w) for n, s in slots.items()}
             for w in (2, 3, 6)}  # fmt: skip
    # Two workers: the heaviest engine (demand) alone, supply and customers together.
    assert where[2]["demand"] != where[2]["supply"] == where[2]["customers"]
    assert len(set(where[3].values())) == len(set(where[6].values())) == 3
    # crc32, not the salted hash(): the same shard in every process and run.
    assert shards.shard_of("ST001") == 6 and shards.shard_of("C000123") == 4
    assert len(set(shards.keys("supply_cover"))) == 12


def test_shard_count_must_be_positive():
    with pytest.raises(ValueError, match=">= 1"):
        Shards(0)
    with pytest.raises(ConfigError, match=r"run\.shards must be >= 1"):
        RunSettings(shards=0)


@pytest.fixture(scope="module")
def messages() -> list[Any]:
    sim = Simulator(SimulationConfig(seed=5, start_date=date(2024, 11, 18), days=21, skus=8,
                                     stores=3, customers=120, new_skus_per_week=1))  # fmt: skip
    return helpers.sim_messages(sim.events())


def _state_with(shards: int, msgs: list[Any], url: str, prefix: str, client: Any) -> Any:
    settings = Settings().replace(run=dataclasses.replace(RunSettings(), shards=shards))
    _, dead, writes = helpers.run_testing_flow(msgs, default_extensions(settings), settings)
    assert not dead
    RedisWriter(url, prefix=prefix).write(writes)
    return helpers.redis_state(client, prefix)


@pytest.mark.integration
def test_the_redis_state_does_not_depend_on_the_shard_count(messages, redis_url, redis_client,
                                                            key_prefix):  # fmt: skip
    """Forecast blocks rendered on 1 or 7 shards, stores' covers kept in 1 or 7 shards:
    the very same keys and values once written through the real sink."""
    one = _state_with(1, messages, redis_url, f"{key_prefix}:a", redis_client)
    seven = _state_with(7, messages, redis_url, f"{key_prefix}:b", redis_client)
    assert sum(k.startswith(":v1:forecast:") for k in one) > 30
    assert one == seven
