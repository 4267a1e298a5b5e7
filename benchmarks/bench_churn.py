"""Churn benchmark: our online churn risk vs recency-only vs BG/NBD, on simulated customers.

Runs the simulator (silent BG/NBD-style churners), feeds every event through the customer
flow's engine (:class:`streams.flows.customers.CustomerBook`, the exact state machine the
Bytewax step runs), and at several cut-off dates scores every customer seen so far with:

* ours: the online churn model's risk at the cut-off;
* recency-only: days since the last purchase;
* BG/NBD: P(no purchase in the horizon) from the online-fitted BG/NBD model.

Ground truth is the issue's definition (no purchase within ``horizon`` days after the
cut-off, from the simulator's own later orders); the simulator's hidden churn dates give a
second view ("already dead at the cut-off"). Also: calibration error (ECE) of our risk,
expected vs actual purchases in the next 90 days, events and customers per second through
the Bytewax flow, memory per 100k customers (hot and evicted).

    .venv/bin/python -m benchmarks.bench_churn            # a few minutes on one core
    .venv/bin/python -m benchmarks.bench_churn --days 720 --customers 10000
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
import zlib
from array import array
from datetime import date
from typing import Any

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from scipy.stats import rankdata

from benchmarks.common import peak_rss_mb, write_result
from processors.churn_labels import LabelQueue, ReorderBuffer
from processors.customer_profile import DAY_MS, new_profile, pack, unpack
from processors.records import Event
from streams.flows.customers import ALL_FEATURES, CustomerBook, CustomerFlow, CustomerSettings
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator
from streams.simulator.events import day_ms

FAMILIES = ("orders", "clickstream", "catalog")


PARTITIONS = 3  # as the topics are created (streams.settings TopicSettings.partitions)


def to_event(e: Any, i: int) -> Event:
    """On the partition its Kafka key picks (crc32, like librdkafka's default partitioner)."""
    part = zlib.crc32(e.key.encode()) % PARTITIONS
    return Event(e.family, e.key, e.value, e.event_time, 0, e.family, part, i)


def partition_batches(events: list[Event], size: int) -> list[list[Event]]:
    """The events as a Kafka replay hands them to the flow: rounds of up to ``size``
    records from each (topic, partition) in turn, each partition in event-time order."""
    streams: dict[tuple[str, int], list[Event]] = {}
    for e in events:
        streams.setdefault((e.topic, e.partition), []).append(e)
    longest = max(len(v) for v in streams.values())
    return [
        [e for k in sorted(streams) for e in streams[k][i : i + size]]
        for i in range(0, longest, size)
    ]


def roc_auc_score(y: np.ndarray, s: np.ndarray) -> float:
    """AUC by ranks (Mann-Whitney), ties counted half."""
    ranks = rankdata(s)
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += abs(p[m].mean() - y[m].mean()) * m.sum()
    return float(total / len(p))


Snap = tuple[float, float, float, float]


def snapshot(book: CustomerBook, cut: int) -> dict[str, Snap]:
    """customer -> (ours, recency days, BG/NBD p(no purchase), BG/NBD expected 90d)."""
    out = {}
    profiles = [*book.hot.items(), *((c, unpack(b)) for c, b in book.cold.items())]
    for c, p in profiles:
        if p.orders == 0:
            continue
        x = book.feature_dict(p, cut)
        n, t_x, T = book.bg_stats(p, cut)
        out[c] = (
            book.churn.predict_proba(x),
            (cut - p.last_purchase) / DAY_MS,
            x["bg_p_no_purchase"],
            book.bg.expected_purchases(90.0, n, t_x, T),
        )
    return out


def cutoff_figures(
    cut: int,
    snap: dict[str, Snap],
    purchases: list[tuple[str, int]],
    churn_ms: dict[str, int],
    horizon: int,
) -> dict[str, Any]:
    """AUC and calibration at one cut-off against what happened in the next horizon."""
    ids = sorted(snap)
    bought_next: dict[str, int] = {}
    for c, t in purchases:
        if cut < t <= cut + horizon:
            bought_next[c] = bought_next.get(c, 0) + 1
    y = np.array([c not in bought_next for c in ids], dtype=float)
    s = np.array([snap[c] for c in ids])
    dead = np.array([churn_ms.get(c, 2**62) <= cut for c in ids], dtype=float)
    actual90 = sum(1 for c, t in purchases if cut < t <= cut + 90 * DAY_MS and c in snap)
    return {
        "cutoff": time.strftime("%Y-%m-%d", time.gmtime(cut / 1000)),
        "customers": len(ids),
        "churn_rate": round(float(y.mean()), 4),
        "auc_ours": round(float(roc_auc_score(y, s[:, 0])), 4),
        "auc_recency": round(float(roc_auc_score(y, s[:, 1])), 4),
        "auc_bgnbd": round(float(roc_auc_score(y, s[:, 2])), 4),
        "auc_vs_true_dead_ours": round(float(roc_auc_score(dead, s[:, 0])), 4),
        "auc_vs_true_dead_bgnbd": round(float(roc_auc_score(dead, s[:, 2])), 4),
        "ece_ours": round(ece(s[:, 0], y), 4),
        "ece_bgnbd": round(ece(s[:, 2], y), 4),
        "expected_purchases_90d": round(float(s[:, 3].sum()), 1),
        "actual_purchases_90d": actual90,
    }


def run_feed(
    batches: list[list[Event]], cuts: list[int], cfg: CustomerSettings
) -> tuple[CustomerBook, dict[int, dict[str, Snap]], list[tuple[str, int]]]:
    """Feed the book batch by batch as the flow's step does (``process_batch``), but apply
    the released events one at a time so that each cut-off is scored just before the
    first event at or after it (nothing from after the cut-off leaks into its scores)."""
    book = CustomerBook(cfg)
    snaps: dict[int, dict[str, Snap]] = {}
    purchases: list[tuple[str, int]] = []
    pending = list(cuts)

    def apply(ev: Event) -> None:
        while pending and ev.event_time >= pending[0]:
            snaps[pending[0]] = snapshot(book, pending[0])
            pending.pop(0)
        book._apply(ev)  # what process_batch does after the reorder buffer

    for batch in batches:
        for ev in batch:
            v = ev.value
            if ev.family == "orders" and v["event_type"] == "ORDER_PLACED" and v["customer_id"]:
                purchases.append((v["customer_id"], ev.event_time))
            if ev.family in ReorderBuffer.FAMILIES:
                book.buffer.push(ev)
            else:
                apply(ev)
        for ev in book.buffer.pop_ready():
            apply(ev)
    for ev in book.buffer.pop_all():
        apply(ev)
    return book, snaps, purchases


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=540)
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--no-flow", action="store_true", help="skip the Bytewax throughput run")
    args = ap.parse_args()
    cfg = CustomerSettings()
    horizon = int(cfg.horizon_days * DAY_MS)
    sim_cfg = SimulationConfig(
        seed=args.seed, start_date=date(2024, 1, 1), days=args.days,
        customers=args.customers, skus=100, stores=6,
    )  # fmt: skip
    sim = Simulator(sim_cfg)
    events = [to_event(e, i) for i, e in enumerate(sim.events()) if e.family in FAMILIES]
    start = day_ms(sim_cfg.start_date)
    cut_days = [d for d in (180, 270, 360, 450) if d + cfg.horizon_days <= args.days]
    cuts = [start + d * DAY_MS for d in cut_days]

    t0 = time.process_time()
    book, snaps, purchases = run_feed([[e] for e in events], cuts, cfg)
    engine_s = time.process_time() - t0  # (the snapshots' time is in it; small)
    replay, replay_snaps, _ = run_feed(partition_batches(events, 1000), cuts, cfg)

    truth = sim.truth.customer_frame().set_index("customer_id")
    churn_ms = {c: day_ms(d.date()) for c, d in truth["churn_date"].dropna().items()}
    figures: dict[str, Any] = {"cutoffs": [], "cutoffs_partition_batched": []}
    for cut in cuts:
        figures["cutoffs"].append(cutoff_figures(cut, snaps[cut], purchases, churn_ms, horizon))
        figures["cutoffs_partition_batched"].append(
            cutoff_figures(cut, replay_snaps[cut], purchases, churn_ms, horizon)
        )
    m = book.metrics
    figures["prequential"] = {
        "labels": m.n, "auc": round(m.auc(), 4), "log_loss": round(m.log_loss(), 4),
        "ece": round(m.ece(), 4),
    }  # fmt: skip
    r = replay.metrics
    figures["prequential_partition_batched"] = {
        "labels": r.n, "auc": round(r.auc(), 4), "log_loss": round(r.log_loss(), 4),
        "ece": round(r.ece(), 4), "late_events": replay.buffer.late,
        "peak_buffered_events": replay.buffer.peak, "forced_out": replay.buffer.forced,
    }  # fmt: skip
    figures["bgnbd_params"] = {k: round(v, 4) for k, v in book.bg.params().items()}
    figures["events"] = len(events)
    figures["customers_seen"] = len(book.hot) + len(book.cold)
    figures["engine_events_per_s"] = round(len(events) / engine_s)
    if not args.no_flow:
        figures.update(flow_rate(events, cfg))
    memory = memory_per_100k()
    customers = len(book.hot) + len(book.cold)
    per_customer = len(book.labels) / max(1, customers)
    memory["pending_label_snapshots_per_customer"] = round(per_customer, 2)
    memory["memory_mb_per_100k_total"] = round(
        memory["memory_mb_per_100k_hot"] + per_customer * memory["memory_mb_per_100k_snapshots"], 1
    )
    figures.update(memory)
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    figures["command"] = (
        f"python -m benchmarks.bench_churn --days {args.days} --customers {args.customers} "
        f"--seed {args.seed}"
    )
    write_result("churn" if args.seed == 11 else f"churn_seed{args.seed}", figures)


def flow_rate(events: list[Event], cfg: CustomerSettings) -> dict[str, float]:
    """Events and customer-events per second through the Bytewax step (CPU time)."""
    flow = Dataflow("bench_churn")
    stream = op.input("in", flow, TestingSource(events, batch_size=1000))
    out: list[Any] = []
    writes = CustomerFlow(cfg).build(stream, Settings())
    op.output("out", writes, TestingSink(out))
    t0 = time.process_time()
    run_main(flow)
    cpu = time.process_time() - t0
    customer_events = sum(
        1 for e in events if e.family != "catalog" and (e.value.get("customer_id") or
                                                        e.family == "clickstream")
    )  # fmt: skip
    return {
        "flow_events_per_s": round(len(events) / cpu),
        "flow_customer_events_per_s": round(customer_events / cpu),
        "flow_redis_writes": len(out),
        "flow_writes_per_event": round(len(out) / len(events), 3),
    }


def memory_per_100k() -> dict[str, float]:
    """Bytes of state per customer, hot (profile objects) and evicted (packed bytes)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    hot = {f"CU{i:07d}": new_profile(i) for i in range(100_000)}
    for i, p in enumerate(hot.values()):
        p.orders, p.monetary, p.cat1, p.n1 = 3, 120.5 + i, "CAT0101", 2
    hot_bytes = tracemalloc.get_traced_memory()[0] - base
    cold = {c: pack(p) for c, p in hot.items()}
    del hot
    gc.collect()
    cold_bytes = tracemalloc.get_traced_memory()[0] - base
    del cold
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    queue = LabelQueue(90 * DAY_MS, 14 * DAY_MS)
    payload = [0.5] * len(ALL_FEATURES)
    for i in range(100_000):  # 25k customers x 4 pending snapshots, as the flow keeps them
        queue.offer(
            f"CU{i % 25_000:07d}", (i // 25_000) * 15 * DAY_MS, array("f", payload).tobytes(), 0.5
        )
    snap_bytes = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {
        "memory_mb_per_100k_hot": round(hot_bytes / 1e6, 1),
        "memory_mb_per_100k_evicted": round(cold_bytes / 1e6, 1),
        "memory_mb_per_100k_snapshots": round(snap_bytes / 1e6, 1),
    }


if __name__ == "__main__":
    main()
