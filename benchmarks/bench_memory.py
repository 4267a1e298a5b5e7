"""Memory over a simulated year with customer turnover: does each engine's state stay bounded?

Runs the three model engines (:class:`processors.demand_engine.DemandEngine`,
:class:`processors.supply_engine.SupplyEngine`, :class:`processors.customer_book.CustomerBook`)
on one simulated year, events fed in event-time order as the flows see them (no Kafka), each
engine in its own child process so that its peak RSS is its own. A fourth child runs the
simulator alone: the baseline every peak RSS includes. At day 90/180/270/365 each child
records the pickled state (what a recovery snapshot holds), the pickled size of each state
attribute with its length, and the current RSS, so growth is visible.

Turnover: the simulator's customers drop out silently (BG/NBD) and ``--new-per-day``
customers sign up every day, so the customers ever seen keep growing while the active ones
level off; the budget (docs/scaling.md) is per ACTIVE customer.

Assortment turnover: the simulator launches SKUs but discontinues none. With
``--discontinue-per-week K`` the benchmark discontinues the K oldest live SKUs at each
week's start (a ``SKU_DISCONTINUED`` catalog event) and from then on drops their order lines,
inventory snapshots, clicks and catalog events (sold out and delisted), so dead series exist.
``--retire-days N`` sets the demand engine's ``retire_after_days`` and the supply flow's
``cover_idle_days`` (0: never retire, the state before issue 7).

    .venv/bin/python -m benchmarks.bench_memory                       # 50k customers, a year
    .venv/bin/python -m benchmarks.bench_memory --customers 2000 --days 60 --name memory_small
    .venv/bin/python -m benchmarks.bench_memory --engines baseline,demand,supply \
        --discontinue-per-week 3 --retire-days 0 --name memory_turnover_keep
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pickle
import subprocess
import sys
import time
from datetime import date
from typing import Any

from benchmarks.bench_churn import to_event
from benchmarks.common import peak_rss_mb, write_result
from benchmarks.supply_steps import CoverSteps
from processors.customer_book import CustomerBook, CustomerSettings
from processors.customer_profile import DAY_MS
from processors.demand_engine import DemandEngine, DemandSettings
from processors.records import Event
from processors.supply_engine import SupplyEngine, SupplySettings
from streams.simulator import SimulationConfig, Simulator
from streams.simulator.events import day_ms

ENGINES = ("baseline", "demand", "supply", "customers")
CHECKPOINT_EVERY_DAYS = 90
_PROTO = pickle.HIGHEST_PROTOCOL


def rss_mb() -> float:
    """Current resident memory (the peak is in benchmarks.common.peak_rss_mb)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def attribute_sizes(obj: Any) -> dict[str, dict[str, int]]:
    """Pickled bytes (and length, for containers) of each attribute, largest first."""
    out: dict[str, dict[str, int]] = {}
    for name, value in vars(obj).items():
        try:
            size = len(pickle.dumps(value, protocol=_PROTO))
        except Exception:  # an unpicklable helper (a bound method, a zone): not state
            continue
        entry = {"bytes": size}
        if isinstance(value, dict | list | set | tuple):
            entry["len"] = len(value)
        out[name] = entry
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["bytes"])[:10])


class Turnover:
    """Discontinues the ``per_week`` oldest live SKUs each week; filters their events out."""

    def __init__(self, per_week: int, start_ms: int) -> None:
        self.per_week = per_week
        self.next_week = start_ms + 7 * DAY_MS
        self.live: dict[str, Event] = {}  # sku -> its latest catalog event, launch order
        self.gone: set[str] = set()

    def __call__(self, e: Event) -> list[Event]:
        if not self.per_week:
            return [e]
        out: list[Event] = []
        while e.event_time >= self.next_week:
            t, self.next_week = self.next_week, self.next_week + 7 * DAY_MS
            for sku in list(self.live)[: self.per_week]:
                last = self.live.pop(sku)
                self.gone.add(sku)
                value = {**last.value, "event_type": "SKU_DISCONTINUED", "event_time": t}
                out.append(last._replace(value=value, event_time=t))
        v = e.value
        if e.family == "orders":
            lines = [ln for ln in v["lines"] if ln["sku"] not in self.gone]
            if lines:
                out.append(e if len(lines) == len(v["lines"]) else
                           e._replace(value={**v, "lines": lines}))  # fmt: skip
        elif e.family in ("catalog", "inventory", "clickstream") and v.get("sku") in self.gone:
            pass  # delisted
        else:
            if e.family == "catalog":
                self.live[v["sku"]] = e
            out.append(e)
        return out


class Feeder:
    """One engine fed the way its flow feeds it; ``figures()`` describes its state."""

    def __init__(self, engine: str, retire_days: int | None = None) -> None:
        self.name = engine
        self.n = 0
        d, s = DemandSettings(), SupplySettings()
        if retire_days is not None:
            d = dataclasses.replace(d, retire_after_days=retire_days)
            s = dataclasses.replace(s, cover_idle_days=float(retire_days))
        if engine == "demand":
            self.demand = DemandEngine(d)
        elif engine == "supply":
            self.supply = SupplyEngine(s)
            self.covers = CoverSteps(s.demand_alpha, s.cover_idle_days)
        elif engine == "customers":
            self.book = CustomerBook(CustomerSettings())
            self.last_order: dict[str, int] = {}  # the benchmark's own count, not state
            self.now = 0

    def feed(self, e: Event) -> None:
        if self.name == "demand":
            self.demand.on_event(e)
        elif self.name == "customers":
            if e.family in ("orders", "clickstream", "catalog"):
                self.book.process(e)
            if e.family == "orders" and e.value.get("customer_id"):
                self.last_order[e.value["customer_id"]] = e.event_time
            self.now = max(self.now, e.event_time)
        elif self.name == "supply" and e.family in ("supplier", "orders", "inventory"):
            self.n += 1
            supplier, covers = self.covers([e])
            for store, sku, cover in covers:
                self.supply.on_cover(sku, store, cover)
            for item in supplier:
                self.supply.on_supplier(item.value, item.event_time)
            if self.n % 500 == 0:  # the flow flushes once per batch
                self.supply.flush()

    def finish(self) -> None:
        if self.name == "demand":
            self.demand.flush()
        elif self.name == "customers":
            self.book.flush()
        elif self.name == "supply":
            self.supply.flush()

    def figures(self) -> dict[str, Any]:
        if self.name == "baseline":
            return {}
        if self.name == "demand":
            eng: Any = self.demand
            series = len(eng.fc.born) if hasattr(eng.fc, "born") else None
            extra = {"series": series, "skus": len(eng.skus), "stores": len(eng.stores),
                     "history_days": len(eng.history), "actual_days": len(eng.actuals),
                     "retired": eng.retired}  # fmt: skip
            blob = len(pickle.dumps(eng, protocol=_PROTO))
            if series:
                extra["bytes_per_series"] = round(blob / series)
        elif self.name == "supply":
            eng = self.supply
            stores_blob = self.covers.state_bytes()
            suppliers = len(eng.detector.watches)
            trackers = self.covers.trackers()
            extra = {"suppliers": suppliers, "open_pos": len(eng.book.open),
                     "cover_state_bytes": stores_blob, "cover_trackers": trackers}  # fmt: skip
            blob = len(pickle.dumps(eng, protocol=_PROTO))
            extra["bytes_per_supplier"] = round(blob / max(1, suppliers))
        else:
            eng = self.book
            hot_b = len(pickle.dumps(eng.hot, protocol=_PROTO))
            cold_b = len(pickle.dumps(eng.cold, protocol=_PROTO))
            blob = len(pickle.dumps(eng, protocol=_PROTO))
            extra = {
                "hot": len(eng.hot), "evicted": len(eng.cold), "devices": len(eng.anon),
                "pending_labels": len(eng.labels), "forgotten": eng.forgotten,
                "customers_seen": len(self.last_order),
                "active_90d": sum(1 for t in self.last_order.values()
                                  if t >= self.now - 90 * DAY_MS),
                "bytes_per_hot_customer": round(hot_b / max(1, len(eng.hot))),
                "bytes_per_evicted_customer": round(cold_b / max(1, len(eng.cold))),
                "bytes_per_customer_held": round(blob / max(1, len(eng.hot) + len(eng.cold))),
            }  # fmt: skip
        return {"state_bytes": blob, **extra, "attributes": attribute_sizes(eng)}


def child(
    engine: str, cfg: SimulationConfig, per_week: int = 0, retire_days: int | None = None
) -> dict[str, Any]:
    """Feed one engine a year; state at each checkpoint (run in its own process)."""
    feeder = Feeder(engine, retire_days)
    start = day_ms(cfg.start_date)
    turnover = Turnover(per_week, start)
    days = range(CHECKPOINT_EVERY_DAYS, cfg.days, CHECKPOINT_EVERY_DAYS)
    marks = [(d, start + d * DAY_MS) for d in days]
    points: list[dict[str, Any]] = []
    cpu0 = time.process_time()
    n = 0
    for i, ev in enumerate(Simulator(cfg).events()):
        e = to_event(ev, i)
        while marks and e.event_time >= marks[0][1]:
            points.append({"day": marks.pop(0)[0], "rss_mb": round(rss_mb(), 1),
                           **feeder.figures()})  # fmt: skip
        for item in turnover(e):
            feeder.feed(item)
        n += 1
    feeder.finish()
    points.append({"day": cfg.days, "rss_mb": round(rss_mb(), 1), **feeder.figures()})
    return {"engine": engine, "events": n, "cpu_s": round(time.process_time() - cpu0, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "checkpoints": points}  # fmt: skip


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per engine: peak RSS over the simulator's, growth of state between checkpoints."""
    base = runs["baseline"]["peak_rss_mb"] if "baseline" in runs else None
    # RSS at a checkpoint (read before that checkpoint's pickling) minus the simulator's own.
    base_rss = {p["day"]: p["rss_mb"] for p in runs.get("baseline", {}).get("checkpoints", [])}
    out: dict[str, Any] = {"baseline_peak_rss_mb": base}
    for name in ENGINES[1:]:
        if name not in runs:
            continue
        pts = runs[name]["checkpoints"]
        sizes = {p["day"]: p["state_bytes"] for p in pts}
        days = sorted(sizes)
        half = [d for d in days if d >= days[-1] // 2]
        growth = {f"day{a}_to_day{b}": round(sizes[b] / max(1, sizes[a]), 3)
                  for a, b in itertools.pairwise(days)}  # fmt: skip
        out[name] = {
            "state_mb": {d: round(sizes[d] / 1e6, 2) for d in days},
            "growth_ratio": growth,
            "second_half_mb_per_30_days": round(
                (sizes[days[-1]] - sizes[half[0]]) / 1e6 / max(1, (days[-1] - half[0]) / 30), 3
            ),
            "rss_over_simulator_mb": {
                p["day"]: round(p["rss_mb"] - base_rss[p["day"]], 1)
                for p in pts
                if p["day"] in base_rss
            },
            "peak_rss_mb": runs[name]["peak_rss_mb"],
            "peak_rss_over_simulator_mb": (
                None if base is None else round(runs[name]["peak_rss_mb"] - base, 1)
            ),
            "cpu_s": runs[name]["cpu_s"],
        }
        if name == "customers":  # the budget's unit: customers who ordered in the last 90 days
            out[name]["bytes_per_active_90d_customer"] = {
                p["day"]: round(p["state_bytes"] / max(1, p["active_90d"])) for p in pts
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--new-per-day", type=float, default=100.0, help="sign-ups per day")
    ap.add_argument("--skus", type=int, default=200)
    ap.add_argument("--stores", type=int, default=12)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--jobs", type=int, default=1, help="children run at once")
    ap.add_argument("--name", default="memory")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset")
    ap.add_argument("--discontinue-per-week", type=int, default=0, help="SKU turnover")
    ap.add_argument(
        "--retire-days", type=int, default=None, help="retire_after_days and cover_idle_days"
    )
    ap.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    cfg = SimulationConfig(
        seed=args.seed, start_date=date(2024, 1, 1), days=args.days, customers=args.customers,
        new_customers_per_day=args.new_per_day, skus=args.skus, stores=args.stores,
    )  # fmt: skip
    if args.child:
        print(json.dumps(child(args.child, cfg, args.discontinue_per_week, args.retire_days)))
        return
    argv = sys.argv[1:]
    runs: dict[str, dict[str, Any]] = {}
    pending = [e for e in ENGINES if e in args.engines.split(",")]
    while pending:
        batch, pending = pending[: args.jobs], pending[args.jobs :]
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "benchmarks.bench_memory", *argv, "--child", name],
                stdout=subprocess.PIPE,
                text=True,
            )
            for name in batch
        }
        for name, proc in procs.items():
            stdout, _ = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"child {name} failed ({proc.returncode})")
            runs[name] = json.loads(stdout.strip().splitlines()[-1])
    figures = {
        "config": {
            "customers": args.customers,
            "days": args.days,
            "new_customers_per_day": args.new_per_day,
            "skus": args.skus,
            "stores": args.stores,
            "seed": args.seed,
            "discontinue_per_week": args.discontinue_per_week,
            "retire_days": args.retire_days,
        },
        "summary": summarise(runs),
        "runs": runs,
        "command": "python -m benchmarks.bench_memory " + " ".join(argv),
    }
    write_result(args.name, figures)


if __name__ == "__main__":
    main()
