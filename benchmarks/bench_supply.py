"""Supply flow benchmark: disruption detection and lead-time accuracy against ground truth.

Feeds simulator events straight into the flow's engine and cover trackers (the same code the
Bytewax steps run, no Kafka), over several seeds, and reports against the simulator's
disruption episodes: recall, precision, median / p90 delay from episode start to the
alert (event-time days), alerts per episode, prequential lead-time MAE against a
per-supplier moving average (last 10 receipts) and band coverage; then the pickled state
size per supplier, the snapshot cost, and the engine's throughput.

    python -m benchmarks.bench_supply [--days 180] [--seeds 5] [--episodes 4]
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
from dataclasses import replace
from datetime import date
from typing import Any

from benchmarks.common import peak_rss_mb, write_result
from benchmarks.supply_steps import CoverSteps
from processors.purchase_orders import DAY_MS
from processors.records import Event
from processors.writes import StreamAdd
from streams.flows.supply import SupplyEngine, SupplySettings, detection_scores
from streams.simulator import SimulationConfig, Simulator
from streams.simulator.events import day_ms


def run_engine(
    cfg: SimulationConfig, settings: SupplySettings
) -> tuple[SupplyEngine, list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """(engine, alert fields in order, truth episodes, timings) for one simulation."""
    sim = Simulator(cfg)
    engine = SupplyEngine(settings)
    steps = CoverSteps(settings.demand_alpha, settings.cover_idle_days)
    alerts: list[dict[str, Any]] = []
    n_sup = n_stock = 0
    busy = 0.0
    for ev in sim.events():
        if ev.family not in ("supplier", "orders", "inventory"):
            continue
        e = Event(ev.family, ev.key, ev.value, ev.event_time, 0, ev.family, 0, 0)
        t0 = time.perf_counter()
        writes: list[Any] = []
        if ev.family == "supplier":
            n_sup += 1
            writes = engine.on_supplier(ev.value, ev.event_time)
        else:
            n_stock += 1
            for store, sku, cover in steps([e])[1]:
                engine.on_cover(sku, store, cover)
        if (n_sup + n_stock) % 500 == 0:  # the flow flushes once per batch
            writes.extend(engine.flush())
        busy += time.perf_counter() - t0
        alerts.extend(dict(w.fields) for w in writes if isinstance(w, StreamAdd))
    origin = day_ms(cfg.start_date)
    episodes = [
        {
            "supplier_id": d.supplier_id,
            "start": origin + d.start_day * DAY_MS,
            "end": origin + (d.end_day + 1) * DAY_MS,
        }
        for d in sim.truth.supply.disruptions
    ]
    # The floor: only POs created during an episode are affected, and the first sign of one
    # is its dispatch (short, with a delay notice), drawn uniformly over its stretched lead
    # time. So: days from episode start to the 1st and 3rd dispatch of an affected PO.
    for ep, d in zip(episodes, sim.truth.supply.disruptions, strict=True):
        first = sorted(
            po.created_day + po.dispatch_days + 0.5 - d.start_day
            for po in sim.truth.supply.purchase_orders
            if po.episode_id == d.episode_id
        )
        ep["first_evidence_days"] = first[0] if first else None
        ep["third_evidence_days"] = first[2] if len(first) > 2 else None
        # With disruption_notices, the supplier's warnings for its POs in flight come first.
        onset = sim.truth.supply.onset_notices.get(d.episode_id)
        start = origin + d.start_day * DAY_MS
        ep["onset_notice_days"] = None if onset is None else (onset[0] - start) / DAY_MS
        ep["onset_notices"] = 0 if onset is None else onset[1]
    timing = {"supplier_events": n_sup, "stock_events": n_stock, "busy_s": busy}
    return engine, alerts, episodes, timing


def state_sizes(engine: SupplyEngine) -> dict[str, Any]:
    """Pickled bytes per supplier (its watch, metrics, lead stats, open POs) and in total."""
    per: list[int] = []
    parts: dict[str, list[int]] = {"watch": [], "metrics": [], "lead_stats": [], "open_pos": []}
    for sup in engine.detector.watches:
        pieces = {
            "watch": engine.detector.watches[sup],
            "metrics": engine.metrics.get(sup),
            "lead_stats": {k: v for k, v in engine.lead.stats.items() if k.split("|")[0] == sup},
            "open_pos": engine.book.open_for(sup),
        }
        for name, obj in pieces.items():
            parts[name].append(len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)))
        per.append(len(pickle.dumps(list(pieces.values()), protocol=pickle.HIGHEST_PROTOCOL)))
    t0 = time.perf_counter()
    blob = pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL)
    dump_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    pickle.loads(blob)
    load_ms = (time.perf_counter() - t0) * 1000
    return {
        "per_supplier_bytes_median": int(statistics.median(per)) if per else 0,
        "per_supplier_bytes_max": max(per, default=0),
        **{f"per_supplier_{k}_bytes_median": int(statistics.median(v)) for k, v in parts.items()},
        "shared_hst_bytes": len(pickle.dumps(engine.detector.hst)),
        "shared_lead_model_bytes": len(pickle.dumps((engine.lead.scaler, engine.lead.regressor))),
        "covers_bytes": len(pickle.dumps(engine.covers)),
        "engine_snapshot_bytes": len(blob),
        "snapshot_dump_ms": round(dump_ms, 2),
        "snapshot_load_ms": round(load_ms, 2),
        "open_pos": len(engine.book.open),
    }


def evaluate(
    days: int,
    seeds: list[int],
    episodes_per_run: int,
    settings: SupplySettings,
    warmup_days: int = 28,
    **cfg: Any,
) -> dict[str, Any]:
    all_eps: list[dict[str, Any]] = []
    opened: list[tuple[str, int]] = []
    n = abs_err = abs_ma = covered = 0.0
    sizes: dict[str, Any] = {}
    timing = {"supplier_events": 0, "stock_events": 0, "busy_s": 0.0}
    entries = 0
    origins: dict[str, int] = {}
    for seed in seeds:
        config = SimulationConfig(
            seed=seed,
            start_date=date(2024, 1, 1),
            days=days,
            clickstream=False,
            disruption_episodes=episodes_per_run,
            **cfg,
        )
        engine, alerts, eps, tm = run_engine(config, settings)
        # Alert ids carry the seed so suppliers of different runs never match each other.
        origins[str(seed)] = day_ms(config.start_date)
        all_eps.extend(
            {**e, "supplier_id": f"{seed}:{e['supplier_id']}", "origin": origins[str(seed)]}
            for e in eps
        )
        opened.extend(
            (f"{seed}:{a['supplier_id']}", int(a["opened_at"]))
            for a in alerts
            if a["status"] == "open"
        )
        entries += len(alerts)
        sc = engine.score
        n += sc["n"]
        abs_err += sc["abs_err"]
        abs_ma += sc["abs_err_ma"]
        covered += sc["covered"]
        for k in timing:
            timing[k] += tm[k]
        sizes = state_sizes(engine)
    det = detection_scores(all_eps, opened)
    # A detector needs a healthy baseline first: also score without the episodes that
    # start in the first `warmup_days` (and without alerts opened then).
    warm = [e for e in all_eps if e["start"] - e["origin"] >= warmup_days * DAY_MS]
    warm_alerts = [a for a in opened if a[1] - origins[a[0].split(":")[0]] >= warmup_days * DAY_MS]
    det_warm = detection_scores(warm, warm_alerts)
    for key in ("first_evidence_days", "third_evidence_days", "onset_notice_days", "onset_notices"):
        vals = sorted(e[key] for e in all_eps if e.get(key) is not None)
        det[f"median_{key}"] = round(statistics.median(vals), 2) if vals else None
    events = timing["supplier_events"] + timing["stock_events"]
    return {
        "detection": det,
        f"detection_after_{warmup_days}d_warmup": det_warm,
        "alert_stream_entries": entries,
        "lead_time": {
            "receipts": int(n),
            "mae_days": round(abs_err / n, 3),
            "mae_moving_average_days": round(abs_ma / n, 3),
            "band_coverage": round(covered / n, 3),
            "band_target": round(1 - settings.band_alpha, 3),
        },
        "state": sizes,
        "engine_throughput": {
            "events": int(events),
            "supplier_events": int(timing["supplier_events"]),
            "events_per_s": round(events / timing["busy_s"]),
        },
    }


def flow_throughput(days: int = 60) -> dict[str, Any]:
    """Events per second through the real Bytewax flow (decode + ingest + supply), 1 worker,
    against the same flow without the supply extension; TestingSource, no Kafka or Redis."""
    from bytewax.testing import TestingSink, TestingSource, run_main

    from streams.dataflow import build_flow
    from streams.flows.supply import SupplyFlow
    from streams.registry import ManifestResolver, SchemaCatalog
    from streams.serde import AvroSerializer
    from streams.settings import Settings
    from tests.helpers import message

    resolver = ManifestResolver(SchemaCatalog.load())
    settings = Settings()
    topics = settings.topics.input_topics()
    sim = Simulator(SimulationConfig(seed=1, start_date=date(2024, 1, 1), days=days))
    enc = {f: AvroSerializer(resolver, f) for f in topics}
    msgs = [
        message(topics[e.family], enc[e.family](e.value), offset=i, broker_ms=e.event_time)
        for i, e in enumerate(sim.events())
    ]
    out: dict[str, Any] = {"events": len(msgs), "days": days}
    for name, ext in (("ingest_only", []), ("with_supply", [SupplyFlow()])):
        sink: list[Any] = []
        built = build_flow(
            settings,
            resolver,
            tail=False,
            source=TestingSource(msgs, batch_size=1000),
            dead_letter_sink=TestingSink([]),
            redis_sink=TestingSink(sink),
            extensions=ext,
        )
        t0 = time.perf_counter()
        run_main(built.flow)
        out[f"{name}_events_per_s"] = round(len(msgs) / (time.perf_counter() - t0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=180)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--episodes", type=int, default=4, help="disruption episodes per run")
    p.add_argument("--no-regressor", action="store_true", help="hierarchical means only")
    p.add_argument("--no-flow", action="store_true", help="skip the Bytewax throughput run")
    p.add_argument("--set", nargs="*", default=[], help="SupplySettings overrides: name=value")
    args = p.parse_args()
    base = SupplySettings().__dict__
    over: dict[str, Any] = {  # int knobs (burst_count, ...) stay ints
        k: int(v) if type(base.get(k)) is int else float(v)
        for k, v in (a.split("=", 1) for a in args.set)
    }
    settings = replace(SupplySettings(), lead_regressor=not args.no_regressor, **over)
    t0 = time.perf_counter()
    figures = evaluate(args.days, list(range(1, args.seeds + 1)), args.episodes, settings)
    if not args.no_flow:
        figures["flow_throughput"] = flow_throughput()
    figures["config"] = {
        "days": args.days,
        "seeds": args.seeds,
        "episodes_per_run": args.episodes,
        "settings": replace(settings).__dict__,
    }
    figures["wall_s"] = round(time.perf_counter() - t0, 1)
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    det = figures["detection"]
    figures["targets"] = {
        "recall>=0.9": bool(det["recall"] is not None and det["recall"] >= 0.9),
        "precision>=0.8": bool(det["precision"] is not None and det["precision"] >= 0.8),
        "median_delay<=2d": bool(
            det["median_delay_days"] is not None and det["median_delay_days"] <= 2
        ),
        "one_alert_per_episode": det["alerts_per_detected_episode"] == 1.0,
    }
    write_result("supply", figures)


if __name__ == "__main__":
    main()
