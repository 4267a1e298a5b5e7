"""Per-stage CPU of a real Bytewax run, without a profiler's distortion.

cProfile charges its own overhead to every Python call, so code with many small calls
(redis-py's encoder, validation) looks far costlier than it is. Instead, the Python entry
points Bytewax calls for each stage are wrapped, before the flow is built, with a
``time.thread_time`` timer: a few calls per batch (two per item for the supply flow's
forecast moves and re-keying), so the run is measured almost as it is. The same stage
names as the plain loop (benchmarks/e2e_plain.py) make the two directly comparable;
whatever the worker thread spends outside them is framework (Timely/Rust, per-item
lambdas of filter / key_on / branch / key_rm, routing, batching).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

__all__ = ["StageTimers"]


class StageTimers:
    """Installs the timers; ``cpu`` holds thread-CPU seconds per stage."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}

    def _wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        cpu = self.cpu
        cpu.setdefault(stage, 0.0)
        clock = time.thread_time

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                cpu[stage] += clock() - t0

        return timed

    def _patch(self, stage: str, owner: Any, name: str) -> None:
        setattr(owner, name, self._wrap(stage, getattr(owner, name)))

    def install(self) -> None:
        """Patch every stage's entry point; call before the flow is built."""
        import infra.redis_sink as sink
        import streams.dataflow as dataflow
        import streams.decode as decode
        import streams.flows.customers as customers
        import streams.flows.demand as demand
        import streams.flows.supply as supply
        import streams.kafka_io as kafka_io
        import streams.kafka_source as kafka_source

        self._patch("kafka_read", kafka_source._Partition, "next_batch")
        self._patch("decode_validate", decode.BatchDecoder, "__call__")
        for name in ("summarize", "accumulate", "ingest_writes"):
            self._patch("ingest", dataflow, name)  # looked up when the flow is built
        self._patch("dedup", decode.Deduplicator, "__call__")
        self._patch("demand", demand._EngineLogic, "on_batch")
        self._patch("demand", demand._RenderLogic, "on_batch")  # the shards' rendering
        self._patch("supply", supply._Router, "__call__")
        self._patch("supply", supply._CoverLogic, "on_batch")
        self._patch("supply", supply._EngineLogic, "on_batch")
        self._patch("supply", supply._ForecastMoves, "__call__")
        self._patch("supply", supply._ToEngine, "__call__")
        self._patch("customers", customers._BookLogic, "on_batch")
        # End of input: the event-time sequencers release what they still hold.
        self._patch("demand", demand._EngineLogic, "on_eof")
        self._patch("supply", supply._EngineLogic, "on_eof")
        self._patch("customers", customers._BookLogic, "on_eof")
        self._patch("redis_write", sink._RedisSinkPartition, "write_batch")
        self._patch("dead_letters", kafka_io._DeadLetterPartition, "write_batch")
        for mod, cls in ((demand, "_EngineLogic"), (customers, "_BookLogic"),
                         (supply, "_CoverLogic"), (supply, "_EngineLogic")):  # fmt: skip
            self._patch("snapshots", getattr(mod, cls), "snapshot")
