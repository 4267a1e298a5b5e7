"""An event-time watermark that partitions read at different speeds cannot push ahead.

Bytewax reads every Kafka partition in turn, up to a batch each; in a replay, a partition
with fewer messages per day covers more days per batch, so the newest event time seen
anywhere runs ahead of what the slower partitions have delivered. Closing a day or
maturing a label on that would call records still queued in a slower partition "late".
As in Flink and Kafka Streams, the watermark is the *minimum* over partitions of each
partition's newest event time. A partition that has delivered nothing yet does not count
(it may have no data at all); one that goes quiet holds the watermark back, which is the
safe side (a bounded run closes what is left at its end).

>>> wm = PartitionWatermark()
>>> wm.observe("orders", 0, 1_000)
1000
>>> wm.observe("orders", 1, 5_000)  # partition 1 is ahead: partition 0 may still deliver
1000
>>> wm.observe("orders", 0, 7_000)
5000
"""

from __future__ import annotations

__all__ = ["PartitionWatermark"]


class PartitionWatermark:
    """``observe(topic, partition, t)`` returns the watermark (-1 before any event)."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    __slots__ = ("_newest", "value")

    def __init__(self) -> None:
        self._newest: dict[tuple[str, int], int] = {}
        self.value = -1

    def observe(self, topic: str, partition: int, event_time: int) -> int:
        key = (topic, partition)
        if event_time > self._newest.get(key, -1):
            self._newest[key] = event_time
            # Never moves back, even when a partition shows up late with older data.
            self.value = max(self.value, min(self._newest.values()))
        return self.value
