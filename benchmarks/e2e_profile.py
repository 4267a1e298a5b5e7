"""Attribute a cProfile of a bounded Bytewax run to the dataflow's stages.

The profile is taken with ``time.thread_time`` as the timer on the worker thread (run_main
runs the worker on the calling thread), so it counts CPU of that thread only: Rust
(Bytewax/Timely) time shows up as the own time of the built-in ``run_main``; librdkafka's background
threads are not in it. Each stage is the cumulative time of the Python entry points Bytewax
calls for it; what remains is framework: Rust plus the per-item lambdas of filter / key_on
/ branch / map steps.
"""

from __future__ import annotations

import pstats
from typing import Any

__all__ = ["STAGE_FUNCTIONS", "attribute", "top_functions"]

# stage -> (file suffix, function name) pairs whose cumulative time is the stage's cost.
STAGE_FUNCTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "kafka_read": (("streams/kafka_source.py", "next_batch"),),
    "avro_decode": (("streams/serde.py", "__call__"),),
    "validate": (("processors/validation.py", "validate"),),
    "decode_step_total": (("streams/decode.py", "__call__"),),
    "ingest": (
        ("processors/ingest.py", "summarize"),
        ("processors/ingest.py", "accumulate"),
        ("processors/writes.py", "ingest_writes"),
    ),
    # The demand and customer engines' on_batch is SequencedLogic's (sequenced.py, shared):
    # their own work is _apply; the sequencer's push is left in framework_rest.
    "demand": (
        ("streams/flows/demand.py", "on_batch"),
        ("streams/flows/demand.py", "_apply"),
        ("streams/flows/demand.py", "on_eof"),
    ),
    "supply": (
        ("streams/flows/supply.py", "__call__"),
        ("streams/flows/supply.py", "on_batch"),
        ("streams/flows/supply.py", "on_eof"),
    ),
    "customers": (
        ("streams/flows/customers.py", "_apply"),
        ("streams/flows/customers.py", "on_eof"),
    ),
    "redis_write": (("infra/redis_sink.py", "write_batch"),),
    "dead_letters": (("streams/kafka_io.py", "write_batch"),),
    "snapshots": (
        ("streams/flows/supply.py", "snapshot"),
        ("streams/flows/demand.py", "snapshot"),
        ("streams/flows/customers.py", "snapshot"),
    ),
    "framework_lambdas": (
        ("streams/dataflow.py", "<lambda>"),
        ("streams/flows/demand.py", "<lambda>"),
        ("streams/flows/customers.py", "<lambda>"),
        ("streams/flows/supply.py", "<lambda>"),
        ("streams/flows/demand.py", "_is_write"),
        ("streams/flows/customers.py", "_is_write"),
        ("streams/flows/supply.py", "_is_write"),
    ),
}


def _norm(path: str) -> str:
    return path.replace("\\", "/")


def attribute(prof_path: str) -> dict[str, Any]:
    """Seconds per stage, the total, and the framework remainder."""
    stats: Any = vars(pstats.Stats(prof_path))["stats"]  # the raw table (untyped in typeshed)
    total = 0.0
    for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.items():
        if name == "run" and _norm(file).endswith("streams/runner.py"):
            total = max(total, ct)
    if total == 0.0:
        total = sum(tt for (_cc, _nc, tt, _ct, _c) in stats.values())
    per_stage: dict[str, float] = {}
    for stage, wanted in STAGE_FUNCTIONS.items():
        s = 0.0
        for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.items():
            if any(_norm(file).endswith(suffix) and name == fn for suffix, fn in wanted):
                s += ct
        per_stage[stage] = s
    # avro_decode and validate are inside the decode step: report the step's rest separately.
    per_stage["decode_other"] = max(
        0.0, per_stage["decode_step_total"] - per_stage["avro_decode"] - per_stage["validate"]
    )
    counted = sum(v for k, v in per_stage.items() if k not in ("avro_decode", "validate",
                                                               "decode_other"))  # fmt: skip
    per_stage["framework_rest"] = max(0.0, total - counted)
    return {"profiled_thread_cpu_s": total, "stage_s": per_stage}


def top_functions(prof_path: str, n: int = 25) -> list[tuple[str, float, float, int]]:
    """The ``n`` functions with the most own time: (where, own s, cumulative s, calls)."""
    stats: Any = vars(pstats.Stats(prof_path))["stats"]  # the raw table (untyped in typeshed)
    rows = [
        (f"{_norm(file).split('site-packages/')[-1].split('/work/main/')[-1]}:{line}:{name}",
         tt, ct, nc)
        for (file, line, name), (_cc, nc, tt, ct, _callers) in stats.items()
    ]  # fmt: skip
    rows.sort(key=lambda r: -r[1])
    return rows[:n]
