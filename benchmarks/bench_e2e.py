"""End to end: every flow over a fixed simulated mix, against a plain confluent-kafka floor.

    python -m benchmarks.bench_e2e [--quick] [--days N] [--skip-profile] [--skip-live]
                                   [--only PART,...] [--live-rate R] [--producer-linger-ms MS]
                                   [--repeat N] [--run KEY=VALUE ...] [--kafka-client K=V ...]
                                   [--out NAME]

Starts the embedded Kafka (Tansu) and Redis (Valkey), creates the topics (``--partitions``
each, default 6: a multiple of 1, 2 and 3 processes, docs/scaling.md), preloads a fixed
simulated mix (seed 11), then, each measured run in its own process
(benchmarks/e2e_worker.py) with its own Redis key prefix so no run sees another's state:

a) ``bounded``: ``streams.runner.run(settings, live=False)``, every flow, one worker;
b) ``profile``: the same under cProfile, attributed to stages (benchmarks/e2e_profile.py);
c) ``plain``: the same work in one plain confluent-kafka loop (benchmarks/e2e_plain.py),
   timed per stage: the cost floor; we report ours / plain per CPU-second, and whether
   both left the same Redis state (``same_redis_state``: keys compared, sink markers aside);
d) ``cluster``: the same flow as 2 Bytewax processes (one worker each), speed-up vs (a);
e) ``live``: the flows tailing fresh topics while this process produces at half of (a)'s
   wall rate; event-to-Redis latency p50 / p99 (method: benchmarks/e2e_live.py), with the
   flow's defaults, once with the producer's ``linger.ms`` 5 (librdkafka's default) and
   once (``live_batched``) with ``--producer-linger-ms`` (20): fuller produce requests
   cost the co-located broker less CPU; the linger is inside the measured latency.
   Each is followed by its floor (``live_floor``, ``live_batched_floor``,
   benchmarks/e2e_floor.py): the same load read by a plain consumer that does nothing, the
   latency this broker and producer allow any consumer on this machine. Each live figure
   carries the CPU the flow, the broker, Redis and this process (producer, poller) used.
   ``--kafka-client`` passes librdkafka settings to the live flow's clients.

The 2-process figure is reported two ways: the wall ratio, which a shared machine inflates
(two processes win a bigger share of oversubscribed cores), and the CPU-bound ratio,
1-process CPU / the busiest process's CPU, the best an idle 2-core machine could show; the
target is judged on the latter. With ``--repeat N`` it is also given as the median of the
rounds' own ratios and as the cheapest 1-process run over the cheapest busier process
(``speedup_cpu_bound_of_minima``): this VM's speed moves between runs, and a slow moment
only adds CPU seconds.

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
        raise SystemExit(f"benchmark worker failed: {proc.args!r}")
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
        "key_prefix": overrides["redis"]["key_prefix"],
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
        "thread_cpu_s_per_process": [p["thread_cpu_s"] for p in parts],
        "stage_cpu_s_per_process": [
            {k: round(v, 3) for k, v in p["stage_cpu_s"].items()} for p in parts
        ],
        "events_per_s_wall": round(n / wall),
        "events_per_cpu_s": round(n / cpu),
        "load_before": load_before,
        "load_after": _load(),
    }


def _live(
    base: dict[str, Any],
    tmp: Path,
    sim_days: int,
    rate: float,
    duration: float,
    client: dict[str, str],
    servers: list[int],
    linger_ms: int = 5,
) -> dict[str, Any]:
    from benchmarks.e2e_live import measure_latency, steady_mix

    prefix = f"e2elive{uuid.uuid4().hex[:4]}."
    overrides = {
        **base,
        "kafka": {**base["kafka"], "client": client},
        "topics": {**base["topics"], "prefix": prefix, "dead_letter": prefix + "deadletter"},
        "redis": {**base["redis"], "key_prefix": f"e2elv{uuid.uuid4().hex[:4]}"},
    }
    settings = load_settings(env={}, overrides=overrides, use_embedded=False)
    create_topics(settings.kafka, settings.topics)
    sim = Simulator(SimulationConfig(seed=12, start_date=date(2025, 3, 1), days=sim_days))
    events = steady_mix(sim.events(), seed=12)
    proc = _worker("live", overrides, tmp)
    try:
        # Warm-up: a few events, until they show in Redis (imports, Kafka assignment).
        warm = measure_latency(settings, events, rate=50, duration_s=3, drain_s=60)
        load_before, srv0 = _load(), [_proc_cpu_s(p) for p in servers]
        flow0, harness0 = _proc_cpu_s(proc.pid), time.process_time()
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
            "flow_cpu_s": round(_proc_cpu_s(proc.pid) - flow0, 2),
            # This process: the producer loop and the Redis poller (benchmarks/e2e_live.py).
            "harness_cpu_s": round(time.process_time() - harness0, 2),
            "servers_cpu_s": round(sum(_proc_cpu_s(p) for p in servers) - sum(srv0), 2),
            # servers is [broker, Redis]: which of the two the producer's linger loads.
            "broker_cpu_s": round(_proc_cpu_s(servers[0]) - srv0[0], 2),
            "redis_cpu_s": round(_proc_cpu_s(servers[1]) - srv0[1], 2),
            "load_before": load_before,
            "load_after": _load(),
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


def _floor(
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
    from benchmarks.e2e_live import steady_mix
    from streams.dataflow import LIVE_FETCH_CONFIG

    prefix = f"e2efloor{uuid.uuid4().hex[:4]}."
    overrides = {
        **base,
        "kafka": {**base["kafka"], "client": client},
        "topics": {**base["topics"], "prefix": prefix, "dead_letter": prefix + "deadletter"},
    }
    settings = load_settings(env={}, overrides=overrides, use_embedded=False)
    create_topics(settings.kafka, settings.topics)
    sim = Simulator(SimulationConfig(seed=12, start_date=date(2025, 3, 1), days=sim_days))
    config = {**settings.kafka.client_config(), **LIVE_FETCH_CONFIG, **client,
              "auto.offset.reset": "earliest"}  # fmt: skip
    srv0, harness0 = [_proc_cpu_s(p) for p in servers], time.process_time()
    figures = measure_floor(
        settings, steady_mix(sim.events(), seed=12), rate=rate, duration_s=duration,
        consumer_config=config, linger_ms=linger_ms,
    )  # fmt: skip
    figures |= {
        "harness_cpu_s": round(time.process_time() - harness0, 2),
        "broker_cpu_s": round(_proc_cpu_s(servers[0]) - srv0[0], 2),
    }
    print(f"   floor (plain consumer, linger.ms {linger_ms}): p50 {figures['latency_ms_p50']} "
          f"ms, p99 {figures['latency_ms_p99']} ms; broker {figures['broker_cpu_s']} CPU s")
    return figures


PARTS = ("bounded", "plain", "cluster", "profile", "live")


def _compare(url: str, a: str, b: str) -> dict[str, Any]:
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


def _profile(base: dict[str, Any], tmp: Path, n: int, servers: list[int]) -> dict[str, Any]:
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
    return prof


def _run_settings(
    pairs: list[str], parser: argparse.ArgumentParser, flag: str = "--run"
) -> dict[str, Any]:
    """``flag KEY=VALUE`` pairs as a dict (JSON values, else strings)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            parser.error(f"{flag} wants KEY=VALUE, not {pair!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _cpu(run: dict[str, Any]) -> float:
    return float(run["cpu_s"])


def _busiest(run: dict[str, Any]) -> float:
    return float(max(run["cpu_s_per_process"]))


def _round_figures(got: dict[str, Any]) -> dict[str, float]:
    """One round's CPU figures and the ratios taken within it."""
    out: dict[str, float] = {k: round(_cpu(v), 2) for k, v in got.items()}
    if "cluster2" in got:
        out["cluster2_busiest"] = round(_busiest(got["cluster2"]), 2)
    if "bounded" in got and "plain" in got:
        out["ratio_to_plain_per_core"] = round(_cpu(got["plain"]) / _cpu(got["bounded"]), 3)
    if "bounded" in got and "cluster2" in got:
        out["speedup_cpu_bound"] = round(_cpu(got["bounded"]) / _busiest(got["cluster2"]), 3)
        same = _same_work_ratio(got["bounded"], got["cluster2"])
        if same is not None:
            out["same_work_cpu_ratio"] = same
    return out


def _same_work_ratio(single: dict[str, Any], cluster: dict[str, Any]) -> float | None:
    """CPU of decode + validate in the cluster (both processes) over one process's.

    It is the same work in both: every message decoded once, in batches of the same size,
    with nothing crossing. So the ratio is how much more CPU the machine took for the same
    instructions while two processes (plus the broker and Redis) were busy: 1.0 on quiet
    cores, up to 1.6 measured here when the VM's host was loaded. The CPU-bound speed-up
    carries the same factor; it is reported beside it, never divided out.
    """
    one = single.get("stage_cpu_s", {}).get("decode_validate")
    per_process = cluster.get("stage_cpu_s_per_process") or []
    two = sum(s.get("decode_validate", 0.0) for s in per_process)
    return round(two / one, 3) if one and two else None


def _summary(results: dict[str, Any]) -> None:
    """Ratios and targets from whichever parts ran."""
    b, p, c = (results.get(k) for k in ("bounded", "plain", "cluster2"))
    targets: dict[str, bool] = {}
    n = results["events"]
    for run in (b, p):
        if run is not None and "stage_cpu_s" in run:
            run["stage_us_per_event"] = {
                k: round(v / n * 1e6, 2) for k, v in run["stage_cpu_s"].items()
            }
    if b is not None and p is not None:
        results["ratio_to_plain_per_core"] = round(b["events_per_cpu_s"] / p["events_per_cpu_s"], 3)
        results["ratio_to_plain_wall"] = round(b["events_per_s_wall"] / p["events_per_s_wall"], 3)
        targets["ratio_to_plain_per_core >= 0.8"] = results["ratio_to_plain_per_core"] >= 0.8
    if b is not None and c is not None:
        results["speedup_2_processes_wall"] = round(b["wall_s"] / c["wall_s"], 3)
        # The busiest process is the critical path on an idle 2-core machine.
        results["speedup_2_processes_cpu_bound"] = round(
            b["cpu_s"] / max(c["cpu_s_per_process"]), 3
        )
        results["cluster_cpu_over_single"] = round(c["cpu_s"] / b["cpu_s"], 3)
        results["same_work_cpu_ratio"] = _same_work_ratio(b, c)
        rounds = results.get("rounds", [])
        if len(rounds) > 1:  # the ratio taken within each round
            ranked = sorted(r["speedup_cpu_bound"] for r in rounds)
            results["speedup_cpu_bound_round_median"] = ranked[(len(ranked) - 1) // 2]
            # A run's CPU seconds are its work at the speed the VM gave at the time, and a
            # slower moment only ever adds seconds: the cheapest of N runs of each kind is
            # the closest to the work itself, for 1 process and for the busier of 2 alike.
            results["speedup_cpu_bound_of_minima"] = round(
                min(r["bounded"] for r in rounds) / min(r["cluster2_busiest"] for r in rounds), 3
            )
        targets["speedup_2_processes_cpu_bound >= 1.7"] = (
            results["speedup_2_processes_cpu_bound"] >= 1.7
        )
    for name in ("live", "live_batched"):
        if name in results:
            lv = results[name]
            targets[f"{name} latency_ms_p99 < 250"] = lv["latency_ms_p99"] < 250
            targets[f"{name} model_latency_ms_p99 < 250"] = lv["model_latency_ms_p99"] < 250
    results["targets"] = targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="15 simulated days, short live run")
    parser.add_argument("--days", type=int, default=None, help="simulated days (default 60)")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--only", default=",".join(PARTS), help=f"parts to run, of {PARTS}")
    parser.add_argument(
        "--live-rate", type=float, default=None, help="live rate (default: half of bounded's)"
    )
    parser.add_argument(
        "--producer-linger-ms",
        type=int,
        default=20,
        help="the producer's linger.ms in the second live run (0: no second run)",
    )
    parser.add_argument(
        "--partitions", type=int, default=6, help="partitions per topic (default 6)"
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=-1,
        help="run.gc_threshold for every run (0: Python's own; default: the setting's)",
    )
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a run.* setting for every run, e.g. epoch_interval_s=1 or blas_threads=0 "
        "(repeatable; values are JSON, else strings)",
    )
    parser.add_argument(
        "--kafka-client",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting for the live flow's clients (kafka.client), e.g. "
        "fetch.min.bytes=65536 (repeatable)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of bounded/plain/cluster (median kept)"
    )
    parser.add_argument("--out", default="e2e", help="result name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    parts = {x.strip() for x in args.only.split(",") if x.strip()}
    if unknown := parts - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    run_settings = _run_settings(args.run, parser)
    client_pairs = _run_settings(args.kafka_client, parser, "--kafka-client")
    live_client = {k: str(v) for k, v in client_pairs.items()}
    if args.gc_threshold >= 0:
        run_settings["gc_threshold"] = args.gc_threshold
    parts -= {"profile"} if args.skip_profile else set()
    parts -= {"live"} if args.skip_live else set()
    if "live" in parts and "bounded" not in parts and args.live_rate is None:
        parser.error("--live-rate is needed when live runs without bounded")
    days = args.days or (15 if args.quick else 60)
    live_s = 10.0 if args.quick else 30.0
    results: dict[str, Any] = {
        "days": days,
        "seed": 11,
        "partitions": args.partitions,
        "gc_threshold": args.gc_threshold if args.gc_threshold >= 0 else "default",
        "run_settings": run_settings,
        "cores": os.cpu_count(),
        "parts": sorted(parts),
    }
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
            "topics": {"partitions": args.partitions},
            **({"run": run_settings} if run_settings else {}),
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
        # Round-robin repeats, median per part: this shared machine's speed drifts by
        # +-20 % within minutes, and a ratio of two runs minutes apart inherits all of it.
        rounds: list[dict[str, Any]] = []
        repeat = args.repeat if parts & {"bounded", "plain", "cluster"} else 0
        for r in range(repeat):
            got: dict[str, Any] = {}
            if "bounded" in parts:
                got["bounded"] = _measured("bounded", "bounded", base, tmp, n, servers)
            if "plain" in parts:
                got["plain"] = _measured("plain", "plain", base, tmp, n, servers)
            if "cluster" in parts:
                got["cluster2"] = _cluster(base, tmp, n, 2)
            rounds.append(got)
            print(f"-- round {r + 1}/{repeat}: {_round_figures(got)}", flush=True)
        for name, key in (("bounded", _cpu), ("plain", _cpu), ("cluster2", _busiest)):
            if rounds and name in rounds[0]:
                ranked = sorted((g[name] for g in rounds), key=key)
                results[name] = ranked[(len(ranked) - 1) // 2]  # the median run (low)
        if len(rounds) > 1:
            results["rounds"] = [_round_figures(g) for g in rounds]
        if "bounded" in parts and "plain" in parts:
            results["same_redis_state"] = _compare(
                redis_server.info.address,
                rounds[0]["bounded"]["key_prefix"],
                rounds[0]["plain"]["key_prefix"],
            )
        if "profile" in parts:
            results["profile"] = _profile(base, tmp, n, servers)
        if "live" in parts:
            rate = args.live_rate or results["bounded"]["events_per_s_wall"] / 2
            results["live"] = _live(base, tmp, days, rate, live_s, live_client, servers)
            results["live_floor"] = _floor(base, days, rate, live_s, live_client, servers, 5)
            if args.producer_linger_ms > 0:
                results["live_batched"] = _live(
                    base, tmp, days, rate, live_s, live_client, servers, args.producer_linger_ms
                )
                results["live_batched_floor"] = _floor(
                    base, days, rate, live_s, live_client, servers, args.producer_linger_ms
                )
    _summary(results)
    write_result(args.out, results)
    _table(results)


def _table(r: dict[str, Any]) -> None:
    b, p, c = r.get("bounded"), r.get("plain"), r.get("cluster2")
    rows: list[tuple[Any, ...]] = [("run", "ev/s wall", "ev/CPU-s", "us CPU/ev", "peak MB", "load")]
    for name, run in (("bytewax, 1 process", b), ("plain loop (floor)", p)):
        if run is not None:
            rows.append((name, run["events_per_s_wall"], run["events_per_cpu_s"],
                         run["us_cpu_per_event"], round(run["peak_rss_mb"]),
                         run["load_before"]))  # fmt: skip
    if c is not None:
        rows.append(("bytewax, 2 processes", c["events_per_s_wall"], c["events_per_cpu_s"],
                     round(c["cpu_s"] / r["events"] * 1e6, 1), max(c["peak_rss_mb_per_process"]),
                     c["load_before"]))  # fmt: skip
    print()
    for row in rows:
        print(f"{row[0]:<22}" + "".join(f"{x:>12}" for x in row[1:]))
    if "ratio_to_plain_per_core" in r:
        print(f"\nours / plain per core: {r['ratio_to_plain_per_core']}  (target >= 0.8)")
    if b is not None and c is not None and "speedup_2_processes_cpu_bound" in r:
        print(f"2 processes / 1, CPU-bound: {r['speedup_2_processes_cpu_bound']}  "
              f"(target >= 1.7; CPU s per process {c['cpu_s_per_process']}, "
              f"1 process {b['cpu_s']:.2f})")  # fmt: skip
        print(f"2 processes / 1, wall:      {r['speedup_2_processes_wall']}  (shared machine)")
        print(f"  same work (decode), CPU in 2 processes / in 1: {r.get('same_work_cpu_ratio')}"
              "  (1.0: the machine ran as fast under both loads)")
        if "speedup_cpu_bound_of_minima" in r:
            print(f"  over {len(r['rounds'])} rounds: median of the rounds' ratios "
                  f"{r['speedup_cpu_bound_round_median']}, cheapest 1-process run / cheapest "
                  f"busier process {r['speedup_cpu_bound_of_minima']}")  # fmt: skip
        if "rounds" in r:
            print("  per round: " + ", ".join(
                f"{g['speedup_cpu_bound']} (same work {g.get('same_work_cpu_ratio')})"
                for g in r["rounds"]))
    runs = [(name, run) for name, run in (("bytewax", b), ("plain", p)) if run is not None]
    for name, run in runs:
        print(f"  {name} Redis sink: {run['sink_batches']:,} batches, "
              f"{run['sink_items']:,} writes, {run['sink_commands']:,} commands")  # fmt: skip
    staged = [(name, run["stage_us_per_event"]) for name, run in runs if run.get("stage_cpu_s")]
    if staged:
        print("\nstage costs (us CPU per event):" + "".join(f"{n:>10}" for n, _ in staged))
        for stage in dict.fromkeys([*STAGES, *(k for _, s in staged for k in s)]):
            print(f"  {stage:<29}" + "".join(f"{s.get(stage, 0.0):>10}" for _, s in staged))
    if "profile" in r:
        print("\nBytewax run under cProfile, share of worker-thread CPU:")
        for stage, share in r["profile"]["stage_share"].items():
            print(f"  {stage:<18}{share:>8.1%}")
    for name in ("live", "live_batched"):
        if name in r:
            lv = r[name]
            print(f"\n{name} at {lv['achieved_rate']:,} ev/s (producer linger.ms "
                  f"{lv['producer_linger_ms']}): p50 {lv['latency_ms_p50']} ms, "
                  f"p99 {lv['latency_ms_p99']} ms (target < 250), load {lv['load_before']}")
            print(f"  split: broker ack p50 {lv['broker_ack_ms_p50']} / p99 "
                  f"{lv['broker_ack_ms_p99']} ms; ack -> Redis p50 {lv['after_ack_ms_p50']} / "
                  f"p99 {lv['after_ack_ms_p99']} ms")  # fmt: skip
            print(f"  customer score of each ORDER_PLACED ({lv['model_orders']:,} orders): "
                  f"p50 {lv['model_latency_ms_p50']} ms, "
                  f"p99 {lv['model_latency_ms_p99']} ms")  # fmt: skip
            print(f"  CPU s: flow {lv['flow_cpu_s']}, broker {lv.get('broker_cpu_s')}, Redis "
                  f"{lv.get('redis_cpu_s')}, producer + poller {lv['harness_cpu_s']}")  # fmt: skip
            if (fl := r.get(f"{name}_floor")) is not None:
                print(f"  floor (plain consumer, no flow): p50 {fl['latency_ms_p50']} ms, p99 "
                      f"{fl['latency_ms_p99']} ms; broker {fl['broker_cpu_s']} CPU s")  # fmt: skip
    print(f"\ntargets: {r['targets']}")


if __name__ == "__main__":
    main()
