"""Latency of the serving read API (infra/serving.py) against the embedded Valkey, loopback.

Loads a realistic keyspace through the real sink (100k customers, 10k sku-store forecasts
and reorder hashes, a supply-alert stream), then times each API method over many calls
with ``time.perf_counter_ns`` around each one (client CPU + one round trip + server work),
and reports p50 / p99 / p99.9 in microseconds. ~10% of the ids asked for do not exist, as
in production (cold starts). Single client, single thread: latency, not throughput.

    python -m benchmarks.bench_serving [--calls 20000] [--customers 100000] [--series 10000]
        [--name serving]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from benchmarks.common import write_result
from infra.embedded import EmbeddedRedis
from infra.redis_sink import RedisWriter
from infra.serving import RetailPulseReader
from processors.customer_book import CustomerScore, CustomerSettings, score_writes
from processors.open_alerts import OpenAlerts
from processors.writes import HashWrite, RedisWrite, StreamAdd

DAY = 86_400_000
T0 = 1_740_614_400_000
STORES = 20
H = 28  # forecast days, as the demand flow publishes


def _customers(n: int, rng: random.Random) -> list[RedisWrite]:
    cfg = CustomerSettings()
    top = json.dumps([["bg_log_expected", 3.1634], ["bg_logit_no_purchase", -2.3773],
                      ["log_product_views", -0.5717]])  # fmt: skip
    out: list[RedisWrite] = []
    for i in range(n):
        risk, clv = rng.random(), rng.lognormvariate(5, 1)
        score = CustomerScore(f"CU{i:07d}", T0 - rng.randrange(90) * DAY, risk, rng.random(),
                              rng.random() * 20, clv, top, rng.randrange(1, 40),
                              risk > 0.95 and clv > 100, T0)  # fmt: skip
        out.extend(score_writes(score, cfg))
    return out


def _series(n: int, rng: random.Random) -> list[RedisWrite]:
    out: list[RedisWrite] = []
    for i in range(n):
        sku, store = f"SKU{i // STORES:05d}", f"S{i % STORES:03d}"
        base = rng.lognormvariate(0, 1)
        mean = [round(base * (1 + 0.2 * ((d % 7) in (4, 5))), 3) for d in range(H)]
        fields: dict[str, str | int | float] = {
            "mean": str(mean), "p10": str([round(m * 0.4, 3) for m in mean]),
            "p50": str([round(m * 0.9, 3) for m in mean]),
            "p90": str([round(m * 2.1, 3) for m in mean]), "model_version": 119, "as_of": T0,
            "actual_last_day": float(rng.randrange(5)), "safety_stock": 1.312,
            "reorder_point": 3.16, "lead_days": 9.5,
        }  # fmt: skip
        out.append(HashWrite("forecast", f"sku_store:{sku}:{store}", fields, T0))
        position = rng.randrange(40)
        stock: dict[str, str | int | float] = {
            "on_hand": position, "position": position, "reorder_point": 7.4,
            "safety_stock": 2.84, "lead_days": 9.5, "signal": int(position < 7.4),
            "suggested_qty": max(0, 8 - position), "as_of": T0,
        }  # fmt: skip
        out.append(HashWrite("reorder", f"{sku}:{store}", stock, T0))
    return out


def _alerts(entries: int, rng: random.Random) -> list[RedisWrite]:
    """A stream like the supply flow's: alerts open, update daily, and close."""
    skus = json.dumps([f"SKU{i:05d}" for i in range(20)])
    stores = json.dumps([f"S{i:03d}" for i in range(STORES)])
    pairs = json.dumps([[f"SKU{i:05d}", "S001", 2.5, 6.4] for i in range(10)])
    evidence = json.dumps({"cusum": 27.0, "late_pos": 21, "late_share": 0.018})
    out: list[RedisWrite] = []
    live: dict[str, int] = {}
    book = OpenAlerts("alerts_open", "supply")  # the open set the engine keeps beside it
    for n in range(entries):
        ms = T0 + n * 3_600_000
        if not live or (len(live) < 8 and rng.random() < 0.05):
            alert_id, status = f"SUP{n % 50:03d}-{ms}", "open"
            live[alert_id] = ms
        else:
            alert_id = rng.choice(sorted(live))
            status = "closed" if rng.random() < 0.03 else "update"
        fields: dict[str, str | int | float] = {
            "alert_id": alert_id, "status": status, "supplier_id": alert_id[:6],
            "severity": "high", "score": 12.0, "affected_skus": skus, "affected_stores": stores,
            "impacted_pairs": pairs, "evidence": evidence, "opened_at": live[alert_id],
            "updated_at": ms,
        }  # fmt: skip
        if status == "closed":
            del live[alert_id]
        out.append(StreamAdd("alerts", "supply", fields, ms, 0))
        out.extend(book.update(fields, ms, 0))
    return out


def _load(url: str, writes: list[RedisWrite]) -> float:
    writer = RedisWriter(url, prefix="rp")
    t0 = time.perf_counter()
    for i in range(0, len(writes), 1000):
        writer.write(writes[i : i + 1000])
    writer.close()
    return time.perf_counter() - t0


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))] / 1000, 1)

    mean_us = round(sum(s) / len(s) / 1000, 1)
    return {"calls": len(s), "p50_us": q(0.5), "p99_us": q(0.99), "p999_us": q(0.999),
            "mean_us": mean_us, "max_us": round(s[-1] / 1000, 1)}  # fmt: skip


def _time(call: Callable[[int], Any], calls: int) -> dict[str, float]:
    for i in range(min(500, calls)):  # warm: connection, caches, branch predictors
        call(i)
    gc.collect()
    samples: list[int] = []
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        call(i)
        samples.append(clock() - t0)
    return _percentiles(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--alert-entries", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=50, help="ids per feature-vector call")
    ap.add_argument("--name", default="serving", help="results file benchmarks/results/NAME.json")
    args = ap.parse_args()
    rng = random.Random(7)
    n_cust, n_series = args.customers, args.series
    # ~10% of the ids asked for are unknown: cold starts answer None, at the same cost
    cust_ids = [f"CU{rng.randrange(int(n_cust * 1.1)):07d}" for _ in range(4096)]
    pairs = [(f"SKU{j // STORES:05d}", f"S{j % STORES:03d}")
             for j in (rng.randrange(int(n_series * 1.1)) for _ in range(4096))]  # fmt: skip
    skus = sorted({sku for sku, _ in pairs})

    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(log_dir=Path(tmp)) as server:
        url = server.info.address
        load_s = _load(url, _customers(n_cust, rng) + _series(n_series, rng))
        load_s += _load(url, _alerts(args.alert_entries, rng))
        print(f"loaded in {load_s:.0f} s; load average {os.getloadavg()}", file=sys.stderr)
        rp = RetailPulseReader(url, prefix="rp")
        b = args.batch
        methods: dict[str, Callable[[int], Any]] = {
            "ping (floor: one round trip)": lambda i: rp.ping(),
            "customer": lambda i: rp.customer(cust_ids[i % 4096]),
            "forecast (sku_store, H=28)": lambda i: rp.forecast("sku_store",
                                                                ":".join(pairs[i % 4096])),
            "reorder": lambda i: rp.reorder(*pairs[i % 4096]),
            "top_churn_risks(10)": lambda i: rp.top_churn_risks(10),
            f"customer_features({b} ids)": lambda i: rp.customer_features(
                [cust_ids[(i * b + k) % 4096] for k in range(b)]),
            f"sku_features({b} skus, store)": lambda i: rp.sku_features(
                [skus[(i * b + k) % len(skus)] for k in range(b)], store="S001"),
        }  # fmt: skip
        figures: dict[str, dict[str, float]] = {}
        for name, call in methods.items():
            figures[name] = _time(call, args.calls)
            print(f"{name}: {figures[name]}", file=sys.stderr, flush=True)
        # Open alerts: one ZREVRANGE of the open set (up to 8 open alerts of ~1.3 kB each).
        name = "open_supply_alerts(20)"
        figures[name] = _time(lambda i: rp.open_supply_alerts(20), args.calls)
        print(f"{name}: {figures[name]}", file=sys.stderr, flush=True)
        rp.close()
        admin = redis.Redis.from_url(url)
        memory_mb = admin.info("memory")["used_memory"] / 2**20
        admin.close()

    print(f"\n{'method':34} {'calls':>7} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'mean':>7}")
    for name, f in figures.items():
        print(f"{name:34} {f['calls']:>7} {f['p50_us']:>8} {f['p99_us']:>8} {f['p999_us']:>9}"
              f" {f['mean_us']:>7}")  # fmt: skip
    write_result(args.name, {
        "setup": {"customers": n_cust, "series": n_series, "alert_entries": args.alert_entries,
                  "batch": b, "calls": args.calls, "load_s": round(load_s, 1),
                  "redis_used_memory_mb": round(memory_mb, 1), "load_avg": os.getloadavg(),
                  "server": "embedded Valkey, 127.0.0.1, single client thread",
                  "hiredis": redis.utils.HIREDIS_AVAILABLE},
        "latency": figures,
    })  # fmt: skip


if __name__ == "__main__":
    main()
