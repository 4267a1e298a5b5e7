"""The measured parts of benchmarks/bench_e2e.py, each run in a process of its own.

``run_measured`` (bounded, plain or profile), ``run_cluster`` (N Bytewax processes),
``run_live`` (the flows tailing fresh topics while this process produces at a fixed rate),
``run_floor`` (the same load read by a plain consumer, benchmarks/e2e_floor.py),
``run_profile`` and ``compare_state``. CPU comes from /proc, per process, so the broker,
Redis, the flow and this harness are told apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.e2e_profile import attribute, top_functions
from infra.processes import free_port, stop_pid
from streams.kafka_io import create_topics
from streams.settings import Settings, load_settings
from streams.simulator import SimulationConfig, Simulator

__all__ = [
    "compare_state",
    "finish",
    "load_average",
    "proc_cpu_s",
    "run_cluster",
    "run_floor",
    "run_live",
    "run_measured",
    "run_profile",
    "start_worker",
]


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a server process (Tansu, Valkey), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_worker(
    mode: str, overrides: dict[str, Any], tmp: Path, *extra: str
) -> subprocess.Popen[bytes]:
    out = tmp / f"{mode}-{uuid.uuid4().hex[:6]}.json"
    cmd = [sys.executable, "-m", "benchmarks.e2e_worker", mode, json.dumps(overrides), str(out)]
    proc = subprocess.Popen([*cmd, *extra])
    proc.out_path = out  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen[bytes], timeout: float = 1800) -> dict[str, Any]:
    if proc.wait(timeout) != 0:
        raise SystemExit(f"benchmark worker failed: {proc.args!r}")
    figures: dict[str, Any] = json.loads(proc.out_path.read_text())  # type: ignore[attr-defined]
    return figures


def run_measured(
    name: str, mode: str, base: dict[str, Any], tmp: Path, n: int, servers: list[int]
) -> dict[str, Any]:
    overrides = {
        **base,
        "redis": {**base["redis"], "key_prefix": f"e2e{name}{uuid.uuid4().hex[:4]}"},
    }
    load_before, srv0 = load_average(), sum(proc_cpu_s(p) for p in servers)
    print(f"-- {name}: running ({n:,} events, load {load_before})", flush=True)
    figures = finish(start_worker(mode, overrides, tmp))
    srv = sum(proc_cpu_s(p) for p in servers) - srv0
    figures |= {
        "key_prefix": overrides["redis"]["key_prefix"],
        "events_per_s_wall": round(n / figures["wall_s"]),
        "events_per_cpu_s": round(n / figures["cpu_s"]),
        "us_cpu_per_event": round(figures["cpu_s"] / n * 1e6, 1),
        "servers_cpu_s": round(srv, 2),  # Tansu + Valkey during the run
        "load_before": load_before,
        "load_after": load_average(),
    }
    print(
        f"   {name}: {figures['events_per_s_wall']:,} ev/s wall, "
        f"{figures['events_per_cpu_s']:,} ev/CPU-s, {figures['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    return figures


def run_cluster(base: dict[str, Any], tmp: Path, n: int, processes: int) -> dict[str, Any]:
    overrides = {**base, "redis": {**base["redis"], "key_prefix": f"e2ecl{uuid.uuid4().hex[:4]}"}}
    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    load_before = load_average()
    print(f"-- cluster of {processes} processes (load {load_before})", flush=True)
    t0 = time.perf_counter()
    procs = [start_worker("cluster", overrides, tmp, str(i), addresses) for i in range(processes)]
    parts = [finish(p) for p in procs]
    wall_outer = time.perf_counter() - t0
    wall = max(p["wall_s"] for p in parts)
    cpu = sum(p["cpu_s"] for p in parts)
    return {
        "processes": processes,
        "wall_s": wall,
        "wall_including_start_s": wall_outer,
        "cpu_s": cpu,
        "cpu_s_per_process": [round(p["cpu_s"], 2) for p in parts],
        "sink_batches_per_process": [p["sink_batches"] for p in parts],
        "sink_commands_per_process": [p["sink_commands"] for p in parts],
        "peak_rss_mb_per_process": [round(p["peak_rss_mb"]) for p in parts],
        "thread_cpu_s_per_process": [p["thread_cpu_s"] for p in parts],
        "stage_cpu_s_per_process": [
            {k: round(v, 3) for k, v in p["stage_cpu_s"].items()} for p in parts
        ],
        "events_per_s_wall": round(n / wall),
        "events_per_cpu_s": round(n / cpu),
        "load_before": load_before,
        "load_after": load_average(),
    }


def _fresh_topics(
    base: dict[str, Any], client: dict[str, str], tag: str
) -> tuple[dict[str, Any], Settings]:
    """Overrides and settings naming new topics (created here) and a new Redis prefix."""
    prefix = f"{tag}{uuid.uuid4().hex[:4]}."
    overrides = {
        **base,
        "kafka": {**base["kafka"], "client": client},
        "topics": {**base["topics"], "prefix": prefix, "dead_letter": prefix + "deadletter"},
        "redis": {**base["redis"], "key_prefix": f"{tag}{uuid.uuid4().hex[:4]}"},
    }
    settings = load_settings(env={}, overrides=overrides, use_embedded=False)
    create_topics(settings.kafka, settings.topics)
    return overrides, settings


def _live_events(sim_days: int) -> Iterator[Any]:
    """The live runs' events: their own seed and dates, shuffled within each day."""
    from benchmarks.e2e_live import steady_mix

    sim = Simulator(SimulationConfig(seed=12, start_date=date(2025, 3, 1), days=sim_days))
    return steady_mix(sim.events(), seed=12)


def run_live(
    base: dict[str, Any],
    tmp: Path,
    sim_days: int,
    rate: float,
    duration: float,
    client: dict[str, str],
    servers: list[int],
    linger_ms: int = 5,
) -> dict[str, Any]:
    from benchmarks.e2e_live import measure_latency

    overrides, settings = _fresh_topics(base, client, "e2elive")
    events = _live_events(sim_days)
    proc = start_worker("live", overrides, tmp)
    try:
        # Warm-up: a few events, until they show in Redis (imports, Kafka assignment).
        warm = measure_latency(settings, events, rate=50, duration_s=3, drain_s=60)
        load_before, srv0 = load_average(), [proc_cpu_s(p) for p in servers]
        flow0, harness0 = proc_cpu_s(proc.pid), time.process_time()
        warm_p50 = warm["latency_ms_p50"]
        print(
            f"-- live at {rate:,.0f} ev/s for {duration:.0f} s, consumer config {client} "
            f"(load {load_before}; warm-up p50 {warm_p50} ms)",
            flush=True,
        )
        figures = measure_latency(
            settings, events, rate=rate, duration_s=duration, linger_ms=linger_ms
        )
        figures |= {
            "consumer_config": client,
            # CPU of the flow process and of Tansu + Valkey while producing and draining.
            "flow_cpu_s": round(proc_cpu_s(proc.pid) - flow0, 2),
            # This process: the producer loop and the Redis poller (benchmarks/e2e_live.py).
            "harness_cpu_s": round(time.process_time() - harness0, 2),
            "servers_cpu_s": round(sum(proc_cpu_s(p) for p in servers) - sum(srv0), 2),
            # servers is [broker, Redis]: which of the two the producer's linger loads.
            "broker_cpu_s": round(proc_cpu_s(servers[0]) - srv0[0], 2),
            "redis_cpu_s": round(proc_cpu_s(servers[1]) - srv0[1], 2),
            "load_before": load_before,
            "load_after": load_average(),
        }
        print(
            f"   offsets: p50 {figures['latency_ms_p50']} ms, p99 {figures['latency_ms_p99']} ms;"
            f" customer scores: p50 {figures['model_latency_ms_p50']} ms, "
            f"p99 {figures['model_latency_ms_p99']} ms"
        )
    finally:
        stop_pid(proc.pid, timeout=20)
        proc.wait(30)
    return figures


def run_floor(
    base: dict[str, Any],
    sim_days: int,
    rate: float,
    duration: float,
    client: dict[str, str],
    servers: list[int],
    linger_ms: int,
) -> dict[str, Any]:
    """The live load on fresh topics, read by a plain consumer with the flow's settings."""
    from benchmarks.e2e_floor import measure_floor
    from streams.dataflow import consumer_overrides

    _, settings = _fresh_topics(base, client, "e2efloor")
    config = {**settings.kafka.client_config(), **consumer_overrides(settings.kafka)}
    srv0, harness0 = [proc_cpu_s(p) for p in servers], time.process_time()
    figures = measure_floor(
        settings, _live_events(sim_days), rate=rate, duration_s=duration,
        consumer_config=config, linger_ms=linger_ms,
    )  # fmt: skip
    figures |= {
        "harness_cpu_s": round(time.process_time() - harness0, 2),
        "broker_cpu_s": round(proc_cpu_s(servers[0]) - srv0[0], 2),
    }
    print(f"   floor (plain consumer, linger.ms {linger_ms}): p50 {figures['latency_ms_p50']} "
          f"ms, p99 {figures['latency_ms_p99']} ms; broker {figures['broker_cpu_s']} CPU s")
    return figures


def compare_state(url: str, a: str, b: str) -> dict[str, Any]:
    """Did the Bytewax run and the plain loop leave the same Redis state? (Same work.)"""
    import redis

    from tests.helpers import redis_state

    client = redis.Redis.from_url(url)
    try:
        da, db = redis_state(client, a), redis_state(client, b)
    finally:
        client.close()
    differing = sorted(k for k in da.keys() | db.keys() if da.get(k) != db.get(k))
    return {"keys": len(da), "keys_differing": len(differing), "examples": differing[:8]}


def run_profile(base: dict[str, Any], tmp: Path, n: int, servers: list[int]) -> dict[str, Any]:
    prof = run_measured("profile", "profile", base, tmp, n, servers)
    prof_path = str(next(tmp.glob("profile-*.json.prof")))
    att = attribute(prof_path)
    total = att["profiled_thread_cpu_s"]
    prof["stage_share"] = {k: round(v / total, 3) for k, v in att["stage_s"].items()}
    prof["stage_us_per_event_profiled"] = {
        k: round(v / n * 1e6, 1) for k, v in att["stage_s"].items()
    }
    prof["profiled_thread_cpu_s"] = round(total, 2)
    prof["top_own_time"] = [
        [where, round(tt, 2), round(ct, 2), calls]
        for where, tt, ct, calls in top_functions(prof_path)
    ]
    return prof
