"""Partitions read at different speeds must not make records of the slower ones "late"."""

from __future__ import annotations

from processors.demand_engine import DemandEngine, DemandSettings
from processors.records import Event
from processors.watermark import PartitionWatermark
from tests.helpers import T0, order

DAY = 86_400_000


def _order_event(partition: int, t: int, n: int) -> Event:
    value = order(event_id=f"o{n}", order_id=f"O{n}", event_time=t)
    return Event("orders", "S1", value, t, 201, "retailpulse.orders", partition, n)


def test_watermark_is_the_slowest_partitions_newest_time():
    wm = PartitionWatermark()
    assert wm.observe("t", 0, 10) == 10
    assert wm.observe("t", 1, 50) == 10
    assert wm.observe("t", 1, 60) == 10
    assert wm.observe("t", 0, 55) == 55
    assert wm.observe("t", 2, 5) == 55  # a newcomer with older data never moves it back


def test_a_fast_partition_does_not_close_days_for_a_slow_one():
    engine = DemandEngine(DemandSettings())
    engine.on_event(_order_event(partition=0, t=T0, n=1))
    engine.on_event(_order_event(partition=1, t=T0 + 60_000, n=2))
    engine.on_event(_order_event(partition=1, t=T0 + 20 * DAY, n=3))  # partition 1 reads ahead
    engine.on_event(_order_event(partition=0, t=T0 + DAY, n=4))  # its day is still open
    engine.on_event(_order_event(partition=0, t=T0 + 2 * DAY, n=5))
    assert engine.book.late_events == 0
