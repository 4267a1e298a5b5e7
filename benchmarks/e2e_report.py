"""bench_e2e's figures: the targets judged on a result, and the table it prints.

The 2-process speed-up is judged CPU-bound (the 1-process run's CPU over the busier
process's); ``same_work_ratio`` tells whether the machine itself ran slower with two busy
processes (the decode stage is the same instructions in both).
"""

from __future__ import annotations

from typing import Any

from benchmarks.e2e_plain import STAGES

__all__ = [
    "busiest_of",
    "cpu_of",
    "print_table",
    "round_figures",
    "same_work_ratio",
    "summarize",
]


def cpu_of(run: dict[str, Any]) -> float:
    return float(run["cpu_s"])


def busiest_of(run: dict[str, Any]) -> float:
    return float(max(run["cpu_s_per_process"]))


def round_figures(got: dict[str, Any]) -> dict[str, float]:
    """One round's CPU figures and the ratios taken within it."""
    out: dict[str, float] = {k: round(cpu_of(v), 2) for k, v in got.items()}
    if "cluster2" in got:
        out["cluster2_busiest"] = round(busiest_of(got["cluster2"]), 2)
    if "bounded" in got and "plain" in got:
        out["ratio_to_plain_per_core"] = round(cpu_of(got["plain"]) / cpu_of(got["bounded"]), 3)
    if "bounded" in got and "cluster2" in got:
        out["speedup_cpu_bound"] = round(cpu_of(got["bounded"]) / busiest_of(got["cluster2"]), 3)
        same = same_work_ratio(got["bounded"], got["cluster2"])
        if same is not None:
            out["same_work_cpu_ratio"] = same
    return out


def same_work_ratio(single: dict[str, Any], cluster: dict[str, Any]) -> float | None:
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


def summarize(results: dict[str, Any]) -> None:
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
        results["same_work_cpu_ratio"] = same_work_ratio(b, c)
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


def print_table(r: dict[str, Any]) -> None:
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
