"""Event-time sequencing: the same events, however partitions interleave and batch, give the
same sequence, and the three model flows the same final writes (docs/event-time.md).

Budget: ~15-25 CPU s (one small simulation; the whole dataflow run three times).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable
from datetime import date
from typing import Any

import pytest

from processors.records import Event
from processors.sequencer import Sequencer
from processors.writes import HashWrite, StreamAdd, ZSetWrite
from streams.dataflow import InputPartitions
from streams.flows import default_extensions
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator
from tests.helpers import message, run_testing_flow

PARTITIONS = 2


@pytest.fixture(scope="module")
def sim_events() -> list[Any]:
    config = SimulationConfig(
        seed=7, start_date=date(2024, 3, 1), days=21, skus=6, stores=2, customers=40
    )
    return list(Simulator(config).events())


def _partition(ev: Any) -> int:
    """The partition a keyed producer would pick (stable: crc32, never hash())."""
    return zlib.crc32(str(ev.key).encode()) % PARTITIONS if ev.key is not None else 0


def _streams(events: Iterable[Any], topic_of: dict[str, str]) -> dict[tuple[str, int], list[Any]]:
    """(topic, partition) -> its records in production order, as (offset, event)."""
    out: dict[tuple[str, int], list[Any]] = {}
    for ev in events:
        part = (topic_of[ev.family], _partition(ev))
        stream = out.setdefault(part, [])
        stream.append((len(stream), ev))
    return out


def _interleave(
    streams: dict[tuple[str, int], list[Any]], rng: random.Random
) -> list[list[tuple[str, int, int, Any]]]:
    """Bytewax-like reading: rounds over the partitions (in a shuffled order), a batch of a
    random size from each; returns the batches of (topic, partition, offset, event)."""
    pos = dict.fromkeys(streams, 0)
    batches = []
    while any(pos[p] < len(s) for p, s in streams.items()):
        order = sorted(streams)
        rng.shuffle(order)
        for part in order:
            n = rng.choice((1, 7, 50, 400))
            chunk = streams[part][pos[part] : pos[part] + n]
            pos[part] += len(chunk)
            if chunk:
                batches.append([(part[0], part[1], off, ev) for off, ev in chunk])
    return batches


def _ends(streams: dict[tuple[str, int], list[Any]]) -> dict[tuple[str, int], int]:
    return {part: len(s) for part, s in streams.items()}


# -- the sequencer alone ---------------------------------------------------------------------


def test_any_interleaving_and_batching_releases_one_total_order(sim_events: list[Any]):
    topic_of = {f: f for f in {e.family for e in sim_events}}
    streams = _streams(sim_events, topic_of)
    expected = [(topic, topic, p) for topic, p in streams]
    reference: list[tuple[Any, ...]] | None = None
    for seed in range(4):
        seq = Sequencer(expected=expected, max_events=10**6)
        seq.expect([], _ends(streams) if seed % 2 else None)  # with and without end offsets
        released: list[Event] = []
        for batch in _interleave(streams, random.Random(seed)):
            seq.push_all(Event(ev.family, ev.key, ev.value, ev.event_time, 0, t, p, off)
                         for t, p, off, ev in batch)  # fmt: skip
            released.extend(seq.pop_ready())
        released.extend(seq.flush())
        keys = [seq.key(e) for e in released]
        assert keys == sorted(keys) and len(keys) == len(sim_events)
        assert seq.late == 0 and seq.forced == 0
        reference = reference or keys
        assert keys == reference


def test_dimension_records_leave_first_at_equal_time():
    seq = Sequencer()
    seq.push(Event("orders", None, {}, 100, 0, "orders", 0, 0))
    seq.push(Event("catalog", None, {}, 100, 0, "catalog", 0, 0))
    seq.push(Event("stores", None, {}, 100, 0, "stores", 0, 0))
    assert seq.pop_ready() == []  # a partition at 100 may still deliver more of time 100
    assert [e.family for e in seq.flush()] == ["stores", "catalog", "orders"]


def test_an_ended_partition_stops_holding_the_watermark():
    seq = Sequencer(expected=[("orders", "o", 0), ("orders", "o", 1)])
    seq.expect([], {("o", 0): 1, ("o", 1): 2})
    seq.push(Event("orders", None, {}, 10, 0, "o", 0, 0))  # partition 0's last record
    seq.push(Event("orders", None, {}, 50, 0, "o", 1, 0))
    assert [e.event_time for e in seq.pop_ready()] == [10]  # partition 1 holds at 50
    seq.push(Event("orders", None, {}, 60, 0, "o", 1, 1))  # its last: nothing holds
    assert [e.event_time for e in seq.pop_ready()] == [50, 60]


def test_late_and_forced_events_are_counted():
    seq = Sequencer(expected=[("orders", "o", 0), ("orders", "o", 1)], max_events=2)
    for i, t in enumerate((10, 20, 30)):
        seq.push(Event("orders", None, {}, t, 0, "o", 0, i))
    assert [e.event_time for e in seq.pop_ready()] == [10]  # partition 1 silent: forced
    assert seq.forced == 1
    seq.push(Event("orders", None, {}, 5, 0, "o", 1, 0))  # older than what left: late
    assert [e.event_time for e in seq.pop_ready()] == [5] and seq.late == 1


# -- the three model flows -------------------------------------------------------------------


def redis_like(writes: Iterable[Any]) -> dict[str, Any]:
    """What the sink leaves in Redis (version-guarded hashes, sorted sets, append-only
    streams with increasing ids); the sink's own liveness markers are not modelled."""
    state: dict[str, Any] = {}
    for w in writes:
        key = f"{w.kind}:{w.entity}"
        if isinstance(w, HashWrite):
            cur = state.get(key)
            if cur is None or w.version >= cur[0]:
                state[key] = (w.version, {**(cur[1] if cur else {}), **w.fields})
        elif isinstance(w, ZSetWrite):
            z = state.setdefault(key, {})
            if w.score is None:
                z.pop(w.member, None)
            else:
                z[w.member] = w.score
        elif isinstance(w, StreamAdd):
            entries = state.setdefault(key, [])
            if not entries or (w.ms, w.seq) > entries[-1][0]:
                entries.append(((w.ms, w.seq), dict(w.fields)))
    return state


def _messages(batches: list[list[tuple[str, int, int, Any]]]) -> list[Any]:
    from streams.registry import ManifestResolver, SchemaCatalog
    from streams.serde import AvroSerializer

    resolver = ManifestResolver(SchemaCatalog.load())
    enc: dict[str, AvroSerializer] = {}
    out = []
    for batch in batches:
        for topic, part, off, ev in batch:
            if ev.family not in enc:
                enc[ev.family] = AvroSerializer(resolver, ev.family)
            out.append(message(topic, enc[ev.family](ev.value), offset=off, partition=part,
                               broker_ms=ev.event_time))  # fmt: skip
    return out


@pytest.mark.parametrize("with_ends", [True])
def test_the_model_flows_write_the_same_whatever_the_interleaving(
    sim_events: list[Any], with_ends: bool
):
    settings = Settings()
    topics = settings.topics.input_topics()
    streams = _streams(sim_events, topics)
    family_of = {t: f for f, t in topics.items()}
    parts: dict[str, list[tuple[int, int]]] = {}
    for (topic, p), records in sorted(streams.items()):
        parts.setdefault(topic, []).append((p, len(records)))
    known = InputPartitions(
        {t: (family_of[t], tuple(ps)) for t, ps in parts.items()}, live=not with_ends
    )
    results = []
    for seed in (1, 2, 3):
        extensions = default_extensions(settings)
        for ext in extensions:
            ext.input_partitions = known  # what build_flow reads from Kafka metadata
        _, dead, writes = run_testing_flow(
            _messages(_interleave(streams, random.Random(seed))), extensions
        )
        assert dead == []
        results.append(redis_like(writes))
    kinds = {k.split(":")[0] for k in results[0]}
    assert {"customer", "churn", "forecast", "demand_score", "reorder"} <= kinds
    for other in results[1:]:
        differ = sorted(k for k in results[0].keys() | other.keys()
                        if results[0].get(k) != other.get(k))  # fmt: skip
        assert differ == [], f"{len(differ)} keys differ, e.g. {differ[:5]}"
