"""End to end: every flow over a fixed simulated mix, against a plain confluent-kafka floor.

    python -m benchmarks.bench_e2e [--quick] [--days N] [--skip-profile] [--skip-live]

Starts the embedded Kafka (Tansu) and Redis (Valkey), creates the topics (3 partitions
each), preloads a fixed simulated mix (seed 11), then, each measured run in its own
process (benchmarks/e2e_worker.py) with its own Redis key prefix so no run sees another's
state:

a) ``bounded``: ``streams.runner.run(settings, live=False)``, every flow, one worker;
b) ``profile``: the same under cProfile, attributed to stages (benchmarks/e2e_profile.py);
c) ``plain``: the same work in one plain confluent-kafka loop (benchmarks/e2e_plain.py),
   timed per stage: the cost floor; we report ours / plain per CPU-second;
d) ``cluster``: the same flow as 2 Bytewax processes (one worker each), speed-up vs (a);
e) ``live``: the flows tailing fresh topics while this process produces at half of (a)'s
   rate; event-to-Redis latency p50 / p99 (method: benchmarks/e2e_live.py).

CPU seconds are the primary figure (the machine is shared: every figure carries the load
average when it was taken). Results: benchmarks/results/e2e.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.common import write_result
from benchmarks.e2e_plain import STAGES
from benchmarks.e2e_profile import attribute, top_functions
from infra.embedded import EmbeddedKafka, EmbeddedRedis
from infra.processes import free_port, stop_pid
from streams.kafka_io import create_topics
from streams.produce import EventProducer
from streams.settings import load_settings
from streams.simulator import SimulationConfig, Simulator

TARGETS = {"ratio_to_plain_per_core": 0.8, "speedup_2_processes": 1.7, "latency_p99_ms": 250.0}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a server process (Tansu, Valkey), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker(
    mode: str, overrides: dict[str, Any], tmp: Path, *extra: str
) -> subprocess.Popen[bytes]:
    out = tmp / f"{mode}-{uuid.uuid4().hex[:6]}.json"
    cmd = [sys.executable, "-m", "benchmarks.e2e_worker", mode, json.dumps(overrides), str(out)]
    proc = subprocess.Popen([*cmd, *extra])
    proc.out_path = out  # type: ignore[attr-defined]
    return proc


def _finish(proc: subprocess.Popen[bytes], timeout: float = 1800) -> dict[str, Any]:
    if proc.wait(timeout) != 0:
        raise SystemExit(f"benchmark worker failed: {proc.args}")
    figures: dict[str, Any] = json.loads(proc.out_path.read_text())  # type: ignore[attr-defined]
    return figures


def _measured(
    name: str, mode: str, base: dict[str, Any], tmp: Path, n: int, servers: list[int]
) -> dict[str, Any]:
    overrides = {
        **base,
        "redis": {**base["redis"], "key_prefix": f"e2e{name}{uuid.uuid4().hex[:4]}"},
    }
    load_before, srv0 = _load(), sum(_proc_cpu_s(p) for p in servers)
    print(f"-- {name}: running ({n:,} events, load {load_before})", flush=True)
    figures = _finish(_worker(mode, overrides, tmp))
    srv = sum(_proc_cpu_s(p) for p in servers) - srv0
    figures |= {
        "events_per_s_wall": round(n / figures["wall_s"]),
        "events_per_cpu_s": round(n / figures["cpu_s"]),
        "us_cpu_per_event": round(figures["cpu_s"] / n * 1e6, 1),
        "servers_cpu_s": round(srv, 2),  # Tansu + Valkey during the run
        "load_before": load_before,
        "load_after": _load(),
    }
    print(
        f"   {name}: {figures['events_per_s_wall']:,} ev/s wall, "
        f"{figures['events_per_cpu_s']:,} ev/CPU-s, {figures['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    return figures


def _cluster(base: dict[str, Any], tmp: Path, n: int, processes: int) -> dict[str, Any]:
    overrides = {**base, "redis": {**base["redis"], "key_prefix": f"e2ecl{uuid.uuid4().hex[:4]}"}}
    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    load_before = _load()
    print(f"-- cluster of {processes} processes (load {load_before})", flush=True)
    t0 = time.perf_counter()
    procs = [_worker("cluster", overrides, tmp, str(i), addresses) for i in range(processes)]
    parts = [_finish(p) for p in procs]
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
        "events_per_s_wall": round(n / wall),
        "events_per_cpu_s": round(n / cpu),
        "load_before": load_before,
        "load_after": _load(),
    }


def _live(
    base: dict[str, Any], tmp: Path, sim_days: int, rate: float, duration: float
) -> dict[str, Any]:
    from benchmarks.e2e_live import measure_latency

    prefix = f"e2elive{uuid.uuid4().hex[:4]}."
    overrides = {
        **base,
        "topics": {**base["topics"], "prefix": prefix, "dead_letter": prefix + "deadletter"},
        "redis": {**base["redis"], "key_prefix": f"e2elv{uuid.uuid4().hex[:4]}"},
    }
    settings = load_settings(env={}, overrides=overrides, use_embedded=False)
    create_topics(settings.kafka, settings.topics)
    events = iter(
        Simulator(SimulationConfig(seed=12, start_date=date(2025, 3, 1), days=sim_days)).events()
    )
    proc = _worker("live", overrides, tmp)
    try:
        # Warm-up: a few events, until they show in Redis (imports, Kafka assignment).
        warm = measure_latency(settings, events, rate=50, duration_s=3, drain_s=60)
        load_before = _load()
        print(f"-- live at {rate:,.0f} ev/s for {duration:.0f} s (load {load_before}; "
              f"warm-up p50 {warm['latency_ms_p50']} ms)", flush=True)  # fmt: skip
        figures = measure_latency(settings, events, rate=rate, duration_s=duration)
        figures |= {"load_before": load_before, "load_after": _load()}
    finally:
        stop_pid(proc.pid, timeout=20)
        proc.wait(30)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="15 simulated days, short live run")
    parser.add_argument("--days", type=int, default=None, help="simulated days (default 60)")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    args = parser.parse_args()
    days = args.days or (15 if args.quick else 60)
    live_s = 10.0 if args.quick else 30.0
    results: dict[str, Any] = {"days": days, "seed": 11, "partitions": 3, "cores": os.cpu_count()}
    with (
        EmbeddedKafka() as kafka,
        EmbeddedRedis() as redis_server,
        tempfile.TemporaryDirectory() as t,
    ):
        tmp = Path(t)
        servers = [s._proc.pid for s in (kafka, redis_server) if s._proc is not None]
        base: dict[str, Any] = {
            "kafka": {"bootstrap_servers": kafka.info.address},
            "redis": {"url": redis_server.info.address, "key_prefix": "e2e"},
            "topics": {"partitions": 3},
        }
        settings = load_settings(env={}, overrides=base, use_embedded=False)
        create_topics(settings.kafka, settings.topics)
        sim = Simulator(SimulationConfig(seed=11, start_date=date(2024, 11, 1), days=days))
        t0, c0 = time.perf_counter(), time.process_time()
        counts = EventProducer(settings).send_all(sim.events())
        n = sum(counts.values())
        results |= {
            "events": n,
            "per_family": dict(sorted(counts.items())),
            "simulate_and_produce_s": round(time.perf_counter() - t0, 1),
            "simulate_and_produce_cpu_s": round(time.process_time() - c0, 1),
        }
        print(f"-- preloaded {n:,} events in {results['simulate_and_produce_s']} s", flush=True)
        results["bounded"] = _measured("bounded", "bounded", base, tmp, n, servers)
        results["plain"] = plain = _measured("plain", "plain", base, tmp, n, servers)
        plain["stage_us_per_event"] = {
            k: round(v / n * 1e6, 2) for k, v in plain["stage_cpu_s"].items()
        }
        results["cluster2"] = _cluster(base, tmp, n, 2)
        if not args.skip_profile:
            prof = _measured("profile", "profile", base, tmp, n, servers)
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
            results["profile"] = prof
        if not args.skip_live:
            rate = results["bounded"]["events_per_s_wall"] / 2
            results["live"] = _live(base, tmp, days, rate, live_s)
    b, p, c = results["bounded"], results["plain"], results["cluster2"]
    results["ratio_to_plain_per_core"] = round(b["events_per_cpu_s"] / p["events_per_cpu_s"], 3)
    results["ratio_to_plain_wall"] = round(b["events_per_s_wall"] / p["events_per_s_wall"], 3)
    results["speedup_2_processes"] = round(b["wall_s"] / c["wall_s"], 3)
    # On a shared, oversubscribed machine two processes also win a bigger share of the
    # cores from the scheduler, which inflates the wall ratio. The CPU-bound ratio is what
    # an idle 2-core machine would show at best: the busiest process is the critical path.
    results["speedup_2_processes_cpu_bound"] = round(b["cpu_s"] / max(c["cpu_s_per_process"]), 3)
    results["targets"] = {
        "ratio_to_plain_per_core >= 0.8": results["ratio_to_plain_per_core"] >= 0.8,
        "speedup_2_processes >= 1.7": results["speedup_2_processes"] >= 1.7,
    }
    if "live" in results:
        results["targets"]["latency_p99_ms < 250"] = results["live"]["latency_ms_p99"] < 250
    write_result("e2e", results)
    _table(results)


def _table(r: dict[str, Any]) -> None:
    b, p, c = r["bounded"], r["plain"], r["cluster2"]
    rows = [
        ("run", "ev/s wall", "ev/CPU-s", "us CPU/ev", "peak MB", "load"),
        ("bytewax, 1 process", b["events_per_s_wall"], b["events_per_cpu_s"], b["us_cpu_per_event"],
         round(b["peak_rss_mb"]), b["load_before"]),
        ("plain loop (floor)", p["events_per_s_wall"], p["events_per_cpu_s"], p["us_cpu_per_event"],
         round(p["peak_rss_mb"]), p["load_before"]),
        ("bytewax, 2 processes", c["events_per_s_wall"], c["events_per_cpu_s"],
         round(c["cpu_s"] / r["events"] * 1e6, 1), max(c["peak_rss_mb_per_process"]),
         c["load_before"]),
    ]  # fmt: skip
    print()
    for row in rows:
        print(f"{row[0]:<22}" + "".join(f"{x:>12}" for x in row[1:]))
    print(f"\nours / plain per core: {r['ratio_to_plain_per_core']}  (target >= 0.8)")
    print(f"2 processes / 1:       {r['speedup_2_processes']}  (target >= 1.7; wall)")
    print(f"  CPU-bound estimate:  {r['speedup_2_processes_cpu_bound']}  (1-process CPU / busiest)")
    for name, run in (("bytewax", b), ("plain", p)):
        print(
            f"  {name} Redis sink: {run['sink_batches']:,} batches, "
            f"{run['sink_items']:,} writes, {run['sink_commands']:,} commands"
        )
    print("\nplain-loop stage costs (us CPU per event):")
    for stage in STAGES:
        print(f"  {stage:<18}{p['stage_us_per_event'][stage]:>8}")
    if "profile" in r:
        print("\nBytewax run under cProfile, share of worker-thread CPU:")
        for stage, share in r["profile"]["stage_share"].items():
            print(f"  {stage:<18}{share:>8.1%}")
    if "live" in r:
        lv = r["live"]
        print(
            f"\nlive at {lv['achieved_rate']:,} ev/s: p50 {lv['latency_ms_p50']} ms, "
            f"p99 {lv['latency_ms_p99']} ms (target < 250), load {lv['load_before']}"
        )


if __name__ == "__main__":
    main()
