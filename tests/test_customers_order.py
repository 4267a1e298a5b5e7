"""Order robustness: a Kafka-style replay (partitions read in batches) gives what a
time-ordered feed gives: the same labels, close AUC and calibration, close scores.

Kafka hands Bytewax each partition's records in turn, a batch at a time: orders (sparse)
then run weeks ahead of clicks (dense). The book's reorder buffer must make that harmless.
Budget: ~10 s on an idle core (one small simulation, a few passes through the book).
"""

from __future__ import annotations

import zlib
from datetime import date

import pytest

from processors.customer_book import CustomerBook, CustomerSettings
from processors.customer_profile import unpack
from processors.records import Event
from streams.simulator import SimulationConfig, Simulator

FAMILIES = ("orders", "clickstream", "catalog")
PARTITIONS = 3


@pytest.fixture(scope="module")
def events() -> list[Event]:
    """A small simulated retailer; each record on the partition its Kafka key picks."""
    sim = Simulator(
        SimulationConfig(
            seed=3, start_date=date(2024, 1, 1), days=100, skus=10, stores=3, customers=300
        )
    )
    return [
        Event(e.family, e.key, e.value, e.event_time, 0, e.family,
              zlib.crc32(e.key.encode()) % PARTITIONS, i)
        for i, e in enumerate(sim.events())
        if e.family in FAMILIES
    ]  # fmt: skip


def partition_batches(events: list[Event], size: int) -> list[list[Event]]:
    """Rounds of ``size`` records from each (topic, partition) in turn, as Bytewax reads them."""
    streams: dict[tuple[str, int], list[Event]] = {}
    for e in events:  # each partition in event-time order, as the producer wrote it
        streams.setdefault((e.topic, e.partition), []).append(e)
    rounds = []
    for start in range(0, max(len(s) for s in streams.values()), size):
        rounds.append([e for k in sorted(streams) for e in streams[k][start : start + size]])
    return rounds


# A short horizon so that many labels mature within a short (fast) simulation
CFG = CustomerSettings(horizon_days=30.0, snapshot_every_days=7.0, churn_warmup=100)


def run(feed: list[list[Event]], per_event: bool) -> CustomerBook:
    book = CustomerBook(CFG)
    for batch in feed:
        if per_event:
            for e in batch:
                book.process(e)
        else:
            book.process_batch(batch)
    book.flush()
    return book


@pytest.fixture(scope="module")
def books(events: list[Event]) -> dict[str, CustomerBook]:
    """The same events fed three ways (computed once for the module's tests)."""
    rounds = partition_batches(events, 100)
    return {
        "time": run([events], per_event=True),
        "per_event": run(rounds, per_event=True),
        "per_batch": run(rounds, per_event=False),
    }


def risks(book: CustomerBook) -> dict[str, float]:
    profiles = {**{c: unpack(b) for c, b in book.cold.items()}, **book.hot}
    return {c: p.risk for c, p in profiles.items() if p.risk >= 0}


def test_partition_batched_replay_matches_the_time_ordered_feed(
    events: list[Event], books: dict[str, CustomerBook]
):
    reference = books["time"]
    rounds = partition_batches(events, 100)
    assert len(rounds) > 5
    # orders really do run ahead of clicks in this feed: days apart within one round
    first = rounds[1]
    spread = max(e.event_time for e in first) - min(e.event_time for e in first)
    assert spread > 3 * 86_400_000
    for replay in (books["per_event"], books["per_batch"]):
        m, ref = replay.metrics, reference.metrics
        assert ref.n > 1_000 and 0.2 < sum(ref.pos) / ref.n < 0.8
        assert m.n == pytest.approx(ref.n, rel=0.02)
        assert sum(m.pos) == pytest.approx(sum(ref.pos), rel=0.03)
        assert m.auc() == pytest.approx(ref.auc(), abs=0.02)
        assert m.ece() == pytest.approx(ref.ece(), abs=0.02)
        assert m.log_loss() == pytest.approx(ref.log_loss(), abs=0.02)
        a, b = risks(replay), risks(reference)
        assert set(a) == set(b)
        diffs = sorted(abs(a[c] - b[c]) for c in a)
        assert diffs[len(diffs) // 2] < 0.01  # median customer: the same published risk
        assert sum(diffs) / len(diffs) < 0.03
        assert len(replay.buffer) == 0 and replay.buffer.forced == 0


def test_a_whole_batch_is_buffered_before_any_event_is_applied(books: dict[str, CustomerBook]):
    """Per-event release applies the first partition's records before the others of the
    same days have arrived (late); buffering the batch first leaves none late."""
    assert books["per_event"].buffer.late > 0
    assert books["per_batch"].buffer.late == 0 and books["time"].buffer.late == 0


def test_the_buffer_is_bounded():
    book = CustomerBook(CustomerSettings(reorder_max_events=10))
    day = 86_400_000
    value = {"event_type": "PAGE_VIEW", "anonymous_id": "D0", "session_id": "s0"}
    book.process(Event("clickstream", None, value, 0, 0, "clicks", 1, 0))
    for i in range(50):  # partition 1 never delivers past time 0: it holds the watermark
        value = {"event_type": "PAGE_VIEW", "anonymous_id": f"D{i}", "session_id": f"s{i}"}
        book.process(Event("clickstream", None, value, (i + 1) * day, 0, "clicks", 0, i))
    assert len(book.buffer) == 10 and book.buffer.forced == 40
    assert book.watermark == 40 * day  # the oldest left anyway, in event-time order
