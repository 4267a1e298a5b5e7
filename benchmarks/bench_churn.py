"""Churn benchmark: our online churn risk vs recency-only vs BG/NBD, on simulated customers.

Runs the simulator (silent BG/NBD-style churners) for each seed, feeds every event through
the customer flow's engine (:class:`processors.customer_book.CustomerBook`, the exact state
machine the Bytewax step runs), and at several cut-off dates scores every customer seen so
far with:

* ours: the online churn model's risk at the cut-off;
* recency-only: days since the last purchase;
* BG/NBD: P(no purchase in the horizon) from the online-fitted BG/NBD model.

Ground truth is the issue's definition (no purchase within ``horizon`` days after the
cut-off, from the simulator's own later orders); the simulator's hidden churn dates give a
second view ("already dead at the cut-off"). Also: calibration error (ECE) and log loss,
expected vs actual purchases and spend in the next 90 days, the 365-day CLV against the
actual spend of the next 365 days (at day ``days - 365`` when the run is long enough),
events and customers per second through the Bytewax flow, memory per 100k customers.

Two feeds per seed: ``ordered`` (event-time order) and ``batched`` (as a Kafka replay
hands partitions to the flow, rounds of 1,000 records per partition). All seeds go to ONE
file, ``benchmarks/results/churn.json``; the throughput and memory figures come from the
first seed.

    .venv/bin/python -m benchmarks.bench_churn                  # seeds 11 12 13, ~3 CPU-min each
    .venv/bin/python -m benchmarks.bench_churn --seeds 11 --feeds ordered --no-flow --jobs 1
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
import zlib
from array import array
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from typing import Any

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from scipy.stats import rankdata, spearmanr

from benchmarks.common import peak_rss_mb, write_result
from processors.churn_labels import LabelQueue
from processors.customer_book import ALL_FEATURES, CustomerBook, CustomerSettings
from processors.customer_profile import DAY_MS, new_profile, pack, unpack
from processors.records import Event
from streams.flows.customers import CustomerFlow
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator
from streams.simulator.events import day_ms

FAMILIES = ("orders", "clickstream")  # what the book's reorder buffer holds back
INPUT_FAMILIES = ("orders", "clickstream", "catalog")
PARTITIONS = 3  # as the topics are created (streams.settings TopicSettings.partitions)
CUT_DAYS = (180, 270, 360, 450)


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


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    q = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def order_value(v: dict[str, Any]) -> float:
    """Net value of an order's lines (as the profile counts it)."""
    total = 0.0
    for line in v.get("lines") or []:
        q, price = float(line.get("quantity") or 0), float(line.get("unit_price") or 0.0)
        total += q * (price - float(line.get("discount") or 0.0))
    return total


# customer -> (ours, recency days, BG/NBD p(none), E[purchases 90 d], E[spend/order], CLV 365 d)
Snap = tuple[float, float, float, float, float, float]
Purchase = tuple[str, int, float]  # customer, event time, net value


def snapshot(book: CustomerBook, cut: int) -> dict[str, Snap]:
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
            book.clv.expected_spend(p.orders, p.monetary),
            book.clv.clv(book.bg.expected_purchases(365.0, n, t_x, T), p.orders, p.monetary),
        )
    return out


def _next(purchases: list[Purchase], cut: int, days: float) -> dict[str, tuple[int, float]]:
    """customer -> (orders, spend) in (cut, cut + days]."""
    out: dict[str, tuple[int, float]] = {}
    end = cut + int(days * DAY_MS)
    for c, t, v in purchases:
        if cut < t <= end:
            n, s = out.get(c, (0, 0.0))
            out[c] = (n + 1, s + v)
    return out


def cutoff_figures(
    cut: int,
    snap: dict[str, Snap],
    purchases: list[Purchase],
    churn_ms: dict[str, int],
    horizon_days: float,
) -> dict[str, Any]:
    """AUC, calibration, purchases and spend at one cut-off against what happened next."""
    ids = sorted(snap)
    if not ids:  # nothing applied before the cut-off (a feed released the future first)
        return {"cutoff": time.strftime("%Y-%m-%d", time.gmtime(cut / 1000)), "customers": 0}
    nxt = _next(purchases, cut, horizon_days)
    nxt90 = _next(purchases, cut, 90.0)
    y = np.array([c not in nxt for c in ids], dtype=float)
    s = np.array([snap[c] for c in ids])
    dead = np.array([churn_ms.get(c, 2**62) <= cut for c in ids], dtype=float)
    spend = np.array([nxt90.get(c, (0, 0.0))[1] for c in ids])
    expected_spend = s[:, 3] * s[:, 4]
    return {
        "cutoff": time.strftime("%Y-%m-%d", time.gmtime(cut / 1000)),
        "customers": len(ids),
        "churn_rate": round(float(y.mean()), 4),
        "auc_ours": round(roc_auc_score(y, s[:, 0]), 4),
        "auc_recency": round(roc_auc_score(y, s[:, 1]), 4),
        "auc_bgnbd": round(roc_auc_score(y, s[:, 2]), 4),
        "auc_vs_true_dead_ours": round(roc_auc_score(dead, s[:, 0]), 4),
        "auc_vs_true_dead_bgnbd": round(roc_auc_score(dead, s[:, 2]), 4),
        "ece_ours": round(ece(s[:, 0], y), 4),
        "ece_bgnbd": round(ece(s[:, 2], y), 4),
        "log_loss_ours": round(log_loss(s[:, 0], y), 4),
        "log_loss_bgnbd": round(log_loss(s[:, 2], y), 4),
        "expected_purchases_90d": round(float(s[:, 3].sum()), 1),
        "actual_purchases_90d": sum(nxt90.get(c, (0, 0.0))[0] for c in ids),
        "expected_spend_90d": round(float(expected_spend.sum())),
        "actual_spend_90d": round(float(spend.sum())),
        "spend_90d_spearman": round(float(spearmanr(expected_spend, spend)[0]), 4),
    }


def clv_figures(cut: int, snap: dict[str, Snap], purchases: list[Purchase]) -> dict[str, Any]:
    """The 365-day CLV made at ``cut`` against each customer's actual spend in the next 365
    days: totals, mean absolute error, rank correlation, and the share of next year's spend
    that the top 20 % by CLV made (vs the same share for a perfect ranking)."""
    ids = sorted(snap)
    nxt = _next(purchases, cut, 365.0)
    pred = np.array([snap[c][5] for c in ids])
    actual = np.array([nxt.get(c, (0, 0.0))[1] for c in ids])
    k = max(1, len(ids) // 5)
    top = np.argsort(-pred, kind="stable")[:k]
    best = np.sort(actual)[::-1][:k]
    total = float(actual.sum())
    return {
        "cutoff": time.strftime("%Y-%m-%d", time.gmtime(cut / 1000)),
        "customers": len(ids),
        "clv_sum": round(float(pred.sum())),
        "actual_spend_365d": round(total),
        "clv_sum_over_actual": round(float(pred.sum()) / total, 4) if total else None,
        "mae_per_customer": round(float(np.abs(pred - actual).mean()), 2),
        "mean_actual_per_customer": round(total / len(ids), 2),
        "spearman": round(float(spearmanr(pred, actual)[0]), 4),
        "top20_share_of_spend": round(float(actual[top].sum()) / total, 4) if total else None,
        "top20_share_perfect": round(float(best.sum()) / total, 4) if total else None,
    }


def run_feed(
    batches: list[list[Event]], cuts: list[int], cfg: CustomerSettings
) -> tuple[CustomerBook, dict[int, dict[str, Snap]], list[Purchase]]:
    """Feed the book batch by batch as the flow's step does (buffer, then release), but
    apply the released events one at a time so that each cut-off is scored just before the
    first event at or after it (nothing from after the cut-off leaks into its scores)."""
    book = CustomerBook(cfg)
    snaps: dict[int, dict[str, Snap]] = {}
    purchases: list[Purchase] = []
    pending = sorted(cuts)

    def apply(ev: Event) -> None:
        while pending and ev.event_time >= pending[0]:
            snaps[pending[0]] = snapshot(book, pending[0])
            pending.pop(0)
        book._apply(ev)  # what process_batch does after the reorder buffer

    for batch in batches:
        for ev in batch:
            v = ev.value
            if ev.family == "orders" and v["event_type"] == "ORDER_PLACED" and v["customer_id"]:
                purchases.append((v["customer_id"], ev.event_time, order_value(v)))
            if ev.family in FAMILIES:
                book.buffer.push(ev)
            else:
                apply(ev)
        for ev in book.buffer.pop_ready():
            apply(ev)
    for ev in book.buffer.flush():
        apply(ev)
    return book, snaps, purchases


def prequential(book: CustomerBook) -> dict[str, Any]:
    m = book.metrics
    return {"labels": m.n, "auc": round(m.auc(), 4), "log_loss": round(m.log_loss(), 4),
            "ece": round(m.ece(), 4)}  # fmt: skip


def simulate(seed: int, days: int, customers: int) -> tuple[list[Event], dict[str, int], int]:
    sim_cfg = SimulationConfig(
        seed=seed, start_date=date(2024, 1, 1), days=days, customers=customers, skus=100,
        stores=6,
    )  # fmt: skip
    sim = Simulator(sim_cfg)
    events = [to_event(e, i) for i, e in enumerate(sim.events()) if e.family in INPUT_FAMILIES]
    truth = sim.truth.customer_frame().set_index("customer_id")
    churn_ms = {c: day_ms(d.date()) for c, d in truth["churn_date"].dropna().items()}
    return events, churn_ms, day_ms(sim_cfg.start_date)


def run_seed(seed: int, days: int, customers: int, feeds: str, flow: bool) -> dict[str, Any]:
    """Every figure of one seed (the flow's throughput only when ``flow``)."""
    cfg = CustomerSettings()
    events, churn_ms, start = simulate(seed, days, customers)
    cuts = [start + d * DAY_MS for d in CUT_DAYS if d + cfg.horizon_days <= days]
    clv_cut = start + (days - 365) * DAY_MS if days - 365 >= 90 else None
    all_cuts = cuts + ([clv_cut] if clv_cut is not None and clv_cut not in cuts else [])
    out: dict[str, Any] = {"seed": seed, "events": len(events)}
    if feeds in ("ordered", "both"):
        t0 = time.process_time()
        book, snaps, purchases = run_feed([[e] for e in events], all_cuts, cfg)
        out["engine_events_per_s"] = round(len(events) / (time.process_time() - t0))
        out["cutoffs"] = [
            cutoff_figures(c, snaps[c], purchases, churn_ms, cfg.horizon_days) for c in cuts
        ]
        if clv_cut is not None:
            out["clv"] = clv_figures(clv_cut, snaps[clv_cut], purchases)
        out["prequential"] = prequential(book)
        out["bgnbd_params"] = {k: round(v, 4) for k, v in book.bg.params().items()}
        out["customers_seen"] = len(book.hot) + len(book.cold)
        out["pending_label_snapshots_per_customer"] = round(
            len(book.labels) / max(1, out["customers_seen"]), 2
        )
        del book, snaps
    if feeds in ("batched", "both"):
        replay, rsnaps, purchases = run_feed(partition_batches(events, 1000), cuts, cfg)
        out["cutoffs_partition_batched"] = [
            cutoff_figures(c, rsnaps[c], purchases, churn_ms, cfg.horizon_days) for c in cuts
        ]
        out["prequential_partition_batched"] = {
            **prequential(replay), "late_events": replay.buffer.late,
            "peak_buffered_events": replay.buffer.peak, "forced_out": replay.buffer.forced,
        }  # fmt: skip
        del replay, rsnaps
    if flow:
        try:  # the flow's wiring is not this benchmark's: its failure must not lose the rest
            out.update(flow_rate(events, cfg))
        except Exception as exc:
            out["flow_error"] = repr(exc)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def summary(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Per seed and cut-off: does ours beat both baselines in AUC, and by how much."""
    rows, wins = [], 0
    for run in runs:
        for c in run.get(key, []):
            if not c["customers"]:
                continue
            margin = c["auc_ours"] - max(c["auc_recency"], c["auc_bgnbd"])
            wins += margin > 0
            rows.append([run["seed"], c["cutoff"], c["auc_ours"], c["auc_recency"],
                         c["auc_bgnbd"], round(margin, 4)])  # fmt: skip
    return {
        "beats_both": f"{wins} of {len(rows)}",
        "min_margin": min((r[5] for r in rows), default=None),
        "rows [seed, cutoff, ours, recency, bgnbd, margin]": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=540)
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    ap.add_argument("--feeds", choices=("ordered", "batched", "both"), default="both")
    ap.add_argument("--jobs", type=int, default=2, help="seeds run in parallel processes")
    ap.add_argument("--no-flow", action="store_true", help="skip the Bytewax throughput run")
    ap.add_argument("--out", default="churn", help="result name (benchmarks/results/<out>.json)")
    args = ap.parse_args()
    work = [(s, args.days, args.customers, args.feeds, i == 0 and not args.no_flow)
            for i, s in enumerate(args.seeds)]  # fmt: skip
    if args.jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(min(args.jobs, len(work))) as pool:
            runs = list(pool.map(run_seed, *zip(*work, strict=True)))
    else:
        runs = [run_seed(*w) for w in work]
    figures: dict[str, Any] = {
        "seeds": args.seeds,
        "summary": summary(runs, "cutoffs"),
        "summary_partition_batched": summary(runs, "cutoffs_partition_batched"),
        "runs": runs,
    }
    first = runs[0]
    for k in ("flow_events_per_s", "flow_customer_events_per_s", "flow_redis_writes",
              "flow_writes_per_event"):  # fmt: skip
        if k in first:
            figures[k] = first.pop(k)
    memory = memory_per_100k()
    per_customer = float(np.mean([r.get("pending_label_snapshots_per_customer", 0.0)
                                  for r in runs]))  # fmt: skip
    memory["pending_label_snapshots_per_customer"] = round(per_customer, 2)
    memory["memory_mb_per_100k_total"] = round(
        memory["memory_mb_per_100k_hot"] + per_customer * memory["memory_mb_per_100k_snapshots"], 1
    )
    figures.update(memory)
    figures["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    figures["command"] = (
        f"python -m benchmarks.bench_churn --days {args.days} --customers {args.customers} "
        f"--seeds {' '.join(map(str, args.seeds))} --feeds {args.feeds}"
    )
    write_result(args.out, figures)


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
