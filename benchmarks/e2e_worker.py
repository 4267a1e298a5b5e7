"""One measured run of the end-to-end benchmark, in its own process (bench_e2e starts it).

    python -m benchmarks.e2e_worker MODE SETTINGS_JSON OUT_JSON [PROCESS_ID ADDRESSES]

MODE: ``bounded`` (``streams.runner.run(settings, live=False)``), ``live`` (tail until
SIGTERM), ``profile`` (bounded under cProfile, stats to OUT_JSON + ".prof"), ``plain``
(benchmarks.e2e_plain), ``cluster`` (the same flow as ``run`` as one Bytewax process of
several: PROCESS_ID of the comma-separated ADDRESSES). SETTINGS_JSON is the ``overrides``
for ``load_settings``. The figures (wall and CPU seconds of the run itself, excluding
imports and start-up; peak RSS of the process) are written to OUT_JSON.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

from streams.settings import Settings, load_settings


def _cluster(settings: Settings, process_id: int, addresses: list[str]) -> None:
    """``streams.runner.run`` as process ``process_id`` of a Bytewax cluster (the product's
    own path, ``retailpulse run --process-id/--addresses``: its GC setting included)."""
    from streams.runner import run

    run(settings, live=False, process_id=process_id, addresses=addresses)


class _ThreadCpu:
    """CPU seconds per thread name (Linux ``/proc/self/task``), sampled every 0.2 s so that
    threads that end before the run does (a cluster's workers) are counted too: which of
    Python's worker, Timely's network threads and librdkafka's spend the process CPU."""

    def __init__(self) -> None:
        import threading

        self._last: dict[str, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._tick = os.sysconf("SC_CLK_TCK")
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        for tid in os.listdir("/proc/self/task"):
            try:
                raw = Path(f"/proc/self/task/{tid}/stat").read_text()
            except OSError:
                continue
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2 :].split()
            self._last[tid] = (name, (int(fields[11]) + int(fields[12])) / self._tick)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def start(self) -> None:
        self._sample()
        self._start = dict(self._last)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._sample()
        by_name: dict[str, float] = {}
        for tid, (name, cpu) in self._last.items():
            before = self._start.get(tid, (name, 0.0))[1]
            by_name[name] = by_name.get(name, 0.0) + cpu - before
        return {k: round(v, 2) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])}


class _SinkCounts:
    """Counts the Redis sink's batches, items and commands (wraps RedisWriter.write)."""

    def __init__(self) -> None:
        self.figures = {"sink_batches": 0, "sink_items": 0, "sink_commands": 0}
        self.by_type: dict[str, int] = {}

    def install(self) -> None:
        from infra.redis_sink import RedisWriter

        original = RedisWriter.write
        figures = self.figures

        by_type: dict[str, int] = {}
        self.by_type = by_type

        def write(writer: Any, writes: Any) -> int:
            sent = original(writer, writes)
            figures["sink_batches"] += 1
            figures["sink_items"] += len(writes)
            figures["sink_commands"] += sent
            for w in writes:  # which kinds of write the flows send (before collapsing)
                name = f"{type(w).__name__}:{w.kind}"
                by_type[name] = by_type.get(name, 0) + 1
            return sent

        RedisWriter.write = write  # type: ignore[method-assign,assignment]


def main(argv: list[str]) -> None:
    mode, overrides, out = argv[0], json.loads(argv[1]), Path(argv[2])
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings(env={}, overrides=overrides, use_embedded=False)
    from streams.runner import run

    # SIGTERM ends a run (Bytewax has no stop call). A live run's figures are measured by
    # the parent, so it just exits; raising SystemExit inside a Bytewax callback would print
    # a long BytewaxRuntimeError traceback that is no error of ours.
    if mode == "live":
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    extra: dict[str, Any] = {}
    counts = _SinkCounts()
    counts.install()  # one increment per batch: no measurable cost
    stages = None
    if mode in ("bounded", "cluster"):
        from benchmarks.e2e_stages import StageTimers

        stages = StageTimers()
        stages.install()
    threads = _ThreadCpu()
    threads.start()
    t_wall, t_cpu, t_thread = time.perf_counter(), time.process_time(), time.thread_time()
    try:
        if mode == "bounded":
            run(settings, live=False)
        elif mode == "live":
            run(settings, live=True)
        elif mode == "profile":
            import cProfile

            prof = cProfile.Profile(time.thread_time)  # CPU of the worker thread
            prof.enable()
            try:
                run(settings, live=False)
            finally:
                prof.disable()
                prof.dump_stats(str(out) + ".prof")
        elif mode == "plain":
            from benchmarks.e2e_plain import run_plain

            extra = run_plain(settings)
        elif mode == "cluster":
            _cluster(settings, int(argv[3]), argv[4].split(","))
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        figures = {
            "mode": mode,
            "wall_s": time.perf_counter() - t_wall,
            "cpu_s": time.process_time() - t_cpu,
            "cpu_total_s": usage.ru_utime + usage.ru_stime,
            # run_main / cli_main run the (single) worker on this thread; the rest of the
            # process CPU is librdkafka's and Timely's background threads.
            "worker_thread_cpu_s": time.thread_time() - t_thread,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "thread_cpu_s": threads.stop(),
            **counts.figures,
            "sink_items_by_kind": dict(sorted(counts.by_type.items())),
            **({"stage_cpu_s": stages.cpu} if stages is not None else {}),
            **extra,
        }
        out.write_text(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
