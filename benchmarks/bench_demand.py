"""Demand forecasting quality and throughput against the simulator's ground truth.

Simulates a year (holidays, promotions, price changes, weekly SKU launches), feeds every
event through the demand flow's state machine (the ``demand.engine`` step, no Kafka), and
scores the forecasts each closed day published, for horizons 1, 7, 14 and 28 days, against
the simulated demand draws:

- ours (p50 for MAE/MASE, the coherent mean for RMSE and WAPE);
- seasonal naive (same weekday of the last observed week);
- AutoETS (statsforecast, season 7), refitted every ``ets_every`` days on the demand
  history up to the origin, on every aggregate node and a sample of SKU and SKU x store
  series (ours are scored on the same subset for the comparison);
- the true expected demand (the floor no forecaster can beat on average).

Separate lines: Black Friday week (Monday before to Cyber Monday), Christmas weeks
(Dec 18-31), SKUs in their first 28 days versus established ones, per hierarchy level.
The first ``warmup`` days are not scored. Throughput: events and order lines per second
through the engine; memory: peak RSS and the pickled state size (the snapshot).

    python -m benchmarks.bench_demand [DAYS [START]] [--no-ets] [--set=field=value ...]
        [--sim=field=value ...]

Default: 490 days from 2023-09-01 (two Black Friday and Christmas seasons).
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import sys
import time
from datetime import date

import numpy as np

from benchmarks.common import peak_rss_mb, write_result
from processors.calendar_features import black_friday, epoch_day
from processors.demand_engine import DemandEngine, DemandSettings, _score_fields
from processors.reconcile import LEVELS
from processors.records import Event
from streams.simulator import SimulationConfig, Simulator

HORIZONS = (1, 7, 14, 28)


def _truth_by_day(sim: Simulator, engine: DemandEngine) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """epoch day -> (demand draws, expected demand) per engine bottom series."""
    world = sim.truth.world
    ids, stores = world.skus.ids, [s.store_id for s in world.stores]
    n_store = len(stores)
    out = {}
    for d in sim.truth.days:
        n = len(engine.tree)
        y, mu = np.zeros(n), np.zeros(n)
        base = world.skus.base[: d.n_sku]
        exp_cells = (base * (d.store_scale + d.online_scale)[:, None]).ravel()
        dem = np.zeros(d.n_sku * n_store)
        dem[d.demand[0]] = d.demand[1]
        for cell in range(d.n_sku * n_store):
            i = engine.tree.index.get((ids[cell // n_store], stores[cell % n_store]))
            if i is not None:
                y[i], mu[i] = dem[cell], exp_cells[cell]
        out[epoch_day(d.date)] = (y, mu)
    return out


def _ets_forecasts(series: np.ndarray, origin_idx: int) -> np.ndarray | None:
    """Batch ETS refit on the same history: statsforecast's AutoETS when installed
    (`pip install --no-deps statsforecast==2.1.1 coreforecast utilsforecast`: its fugue
    dependency pins pandas<3, so it is not in the lock), else statsmodels' additive
    Holt-Winters with weekly seasonality (the `bench` extra)."""
    hist = series[: origin_idx + 1]
    if len(hist) < 28 or hist.sum() <= 0:
        return None
    try:
        from statsforecast.models import AutoETS
    except ImportError:
        return _holt_winters(hist)
    try:
        fit = AutoETS(season_length=7).forecast(y=hist.astype(float), h=max(HORIZONS))
    except Exception:
        return None
    return np.maximum(np.asarray(fit["mean"]), 0.0)


def _holt_winters(hist: np.ndarray) -> np.ndarray | None:
    import warnings

    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ExponentialSmoothing(
                hist.astype(float), trend=None, seasonal="add", seasonal_periods=7
            ).fit()
            forecast = fit.forecast(max(HORIZONS))
    except Exception:
        return None
    return np.maximum(np.asarray(forecast), 0.0)


def main(
    days: int = 365,
    with_ets: bool = True,
    ets_every: int = 28,
    warmup: int = 56,
    overrides: dict[str, float] | None = None,
    name: str = "demand",
    start: date = date(2023, 9, 1),
    sim_overrides: dict[str, int] | None = None,
) -> None:
    cfg = SimulationConfig(seed=11, start_date=start, days=days, **(sim_overrides or {}))
    t0 = time.perf_counter()
    sim = Simulator(cfg)
    events = [
        Event(e.family, e.key, e.value, e.event_time, 0, e.family, 0, i)
        for i, e in enumerate(sim.events())
    ]
    gen_s = time.perf_counter() - t0
    settings = dataclasses.replace(DemandSettings(), **(overrides or {}))
    engine = DemandEngine(settings)
    captured: dict[int, dict[str, np.ndarray]] = {}
    close = engine.close_day

    def capture(cd):  # type: ignore[no-untyped-def]
        writes = close(cd)
        captured[cd.day] = {
            lv: a.astype(np.float32)
            for lv, a in engine.history[cd.day].items()  # mean p10 p50 p90
        }
        return writes

    engine.close_day = capture  # type: ignore[method-assign]
    lines = sum(len(e.value["lines"]) for e in events if e.family == "orders")
    t0, cpu0 = time.perf_counter(), time.process_time()
    n_writes = sum(len(engine.on_event(e)) for e in events)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    del engine.close_day  # back to the class method, so the state pickles as in the flow
    state_mb = len(pickle.dumps(engine)) / 1e6
    print(f"engine: {len(events)} events in {wall:.1f}s, {n_writes} writes", file=sys.stderr)

    truth = _truth_by_day(sim, engine)
    tree = engine.tree
    days_sorted = sorted(truth)
    actual = {d: tree.aggregate(truth[d][0]) for d in days_sorted}
    expected = {d: tree.aggregate(truth[d][1]) for d in days_sorted}
    first = days_sorted[0] + warmup
    years = range(cfg.start_date.year, cfg.end_date.year + 1)
    # Black Friday week: the Monday before Thanksgiving to Cyber Monday; Christmas: Dec 18-31.
    seasons = {f"bf{y}": {epoch_day(black_friday(y)) + k for k in range(-4, 4)} for y in years}
    seasons.update({f"xmas{y}": {epoch_day(date(y, 12, 18)) + k for k in range(14)} for y in years})
    holiday_days = set().union(*seasons.values())
    born = engine.fc.born

    def score(level: str, h: int, segment: str = "all", subset: np.ndarray | None = None):
        k = HORIZONS.index(h)
        acc = np.zeros(7)  # n, ae p50, ae naive, ae floor, abs actual, ae mean, in [p10, p90]
        for d in days_sorted:
            o = d - h
            if d < first or o not in captured:
                continue
            if segment in seasons and d not in seasons[segment]:
                continue
            if segment == "normal" and d in holiday_days:
                continue
            naive_day = d - 7 * math.ceil(h / 7)
            if naive_day not in actual:
                continue
            f = captured[o][level]
            m = len(f)
            sel = np.arange(m)
            if segment in ("new", "established") and level == "sku_store":
                young = d - born[:m] < 28
                sel = sel[young & (d - born[:m] >= 0)] if segment == "new" else sel[~young]
            if subset is not None:
                sel = np.intersect1d(sel, subset)
            y = actual[d][level][sel]
            acc += [
                len(sel),
                np.abs(y - f[sel, k, 2]).sum(),
                np.abs(y - actual[naive_day][level][sel]).sum(),
                np.abs(y - expected[d][level][sel]).sum(),
                y.sum(),
                np.abs(y - f[sel, k, 0]).sum(),
                ((y >= f[sel, k, 1]) & (y <= f[sel, k, 3])).sum(),
            ]
        n = max(acc[0], 1)
        return {
            "n": int(acc[0]),
            "mae": acc[1] / n,
            "mae_naive": acc[2] / n,
            "mae_floor": acc[3] / n,
            "mase": acc[1] / acc[2] if acc[2] else None,
            "mase_mean": acc[5] / acc[2] if acc[2] else None,
            "mase_floor": acc[3] / acc[2] if acc[2] else None,
            "wape": acc[5] / acc[4] if acc[4] else None,
            "wape_floor": acc[3] / acc[4] if acc[4] else None,
            "coverage_p10_p90": acc[6] / n,
        }

    per_level = {f"{lv}:h{h}": score(lv, h) for lv in LEVELS for h in HORIZONS}
    normal = {f"{lv}:h{h}": score(lv, h, "normal") for lv in LEVELS for h in HORIZONS}
    segments = {
        f"{seg}:{lv}:h{h}": score(lv, h, seg)
        for seg in (*seasons, "normal")
        for lv in ("total", "department", "category", "sku", "sku_store")
        for h in (1, 7)
    }
    cold = {
        f"{seg}:sku_store:h{h}": score("sku_store", h, seg)
        for seg in ("new", "established")
        for h in (1, 7)
    }
    figures = {
        "days": days,
        "series_bottom": len(tree),
        "events": len(events),
        "order_lines": lines,
        "simulate_s": round(gen_s, 1),
        "engine_wall_s": round(wall, 1),
        "engine_cpu_s": round(cpu, 1),
        "events_per_s": round(len(events) / wall),
        "order_lines_per_s": round(lines / wall),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "state_snapshot_mb": round(state_mb, 2),
        "per_level": per_level,
        "normal_days": normal,
        "holiday_ratio": _holiday_ratios(segments, seasons),
        "segments": segments,
        "cold_start": cold,
        # the flow's own running scores (warm-up included): coverage of [p10, p90]
        "prequential": {f"{lv}:h{h}": _score_fields(a) for (lv, h), a in engine.scores.items()},
    }
    if with_ets:
        figures["ets"] = _ets_compare(tree, actual, captured, days_sorted, first, ets_every)
    # the total level on every holiday-season day: what the week-level ratios are made of
    k1, k7 = HORIZONS.index(1), HORIZONS.index(7)
    figures["holiday_days_total"] = {
        str(date.fromordinal(d + 719_163)): {
            "actual": round(float(actual[d]["total"][0]), 1),
            "expected": round(float(expected[d]["total"][0]), 1),
            "mean_h1": round(float(captured[d - 1]["total"][0, k1, 0]), 1),
            "mean_h7": round(float(captured[d - 7]["total"][0, k7, 0]), 1),
        }
        for d in sorted(holiday_days)
        if d in actual and d - 1 in captured and d - 7 in captured
    }
    figures["settings"] = {k: str(v) for k, v in dataclasses.asdict(settings).items()}
    write_result(name, figures)


def _holiday_ratios(segments, seasons):  # type: ignore[no-untyped-def]
    """Holiday-week error over normal weeks' per level and horizon, two readings: WAPE
    (scale-free: holiday demand is several times normal) and plain MAE (absolute units)."""
    out = {}
    for key, seg in segments.items():
        name, lv, h = key.split(":")
        base = segments.get(f"normal:{lv}:{h}")
        if name == "normal" or name not in seasons or not base or not seg["n"]:
            continue
        out[key] = {
            "wape_ratio": seg["wape"] / base["wape"] if seg["wape"] and base["wape"] else None,
            "mae_ratio": seg["mae"] / base["mae"] if base["mae"] else None,
            "mase_ratio": seg["mase"] / base["mase"] if seg["mase"] and base["mase"] else None,
        }
    return out


def _ets_compare(tree, actual, captured, days_sorted, first, every):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    out = {}
    d0 = days_sorted[0]
    for level in LEVELS:
        n_nodes = len(tree.nodes[level])
        subset = np.arange(n_nodes) if n_nodes <= 250 else rng.choice(n_nodes, 100, replace=False)
        acc = {h: np.zeros(3) for h in HORIZONS}  # n, ae ours, ae ets
        for origin in range(first, days_sorted[-1] - max(HORIZONS) + 1, every):
            if origin not in captured:
                continue
            f = captured[origin][level]
            for j in subset:
                if j >= len(f):
                    continue
                series = np.array(
                    [
                        actual[d][level][j] if j < len(actual[d][level]) else 0.0
                        for d in range(d0, origin + 1)
                    ]
                )
                ets = _ets_forecasts(series, origin - d0)
                if ets is None:
                    continue
                for k, h in enumerate(HORIZONS):
                    y = actual[origin + h][level][j]
                    acc[h] += [1, abs(y - f[j, k, 2]), abs(y - ets[h - 1])]
        out[level] = {
            f"h{h}": {
                "n": int(a[0]),
                "mae_ours": a[1] / max(a[0], 1),
                "mae_ets": a[2] / max(a[0], 1),
            }
            for h, a in acc.items()
        }
        print(f"ets {level}: {out[level]}", file=sys.stderr)
    return out


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    # --set name=value overrides a DemandSettings field (for the design measurements)
    sets = dict(a[len("--set=") :].split("=", 1) for a in sys.argv[1:] if a.startswith("--set="))
    ints = ("fourier_terms", "horizon_days")
    bools = ("series_features", "click_features", "adagrad", "event_effects", "event_priors")
    over = {
        k: (v == "1" if k in bools else int(v) if k in ints else float(v)) for k, v in sets.items()
    }
    # --sim=name=value overrides an integer SimulationConfig field (reduced runs: --sim=skus=60)
    sim_args = [a[len("--sim=") :].split("=", 1) for a in sys.argv[1:] if a.startswith("--sim=")]
    sims = {k: int(v) for k, v in sim_args}
    tag = "demand" + "".join(f"_{k}{v}" for k, v in {**sets, **sims}.items())
    start = date.fromisoformat(args[1]) if len(args) > 1 else date(2023, 9, 1)
    days = int(args[0]) if args else 490
    main(
        days,
        with_ets="--no-ets" not in sys.argv,
        overrides=over,
        name=tag,
        start=start,
        sim_overrides=sims,
    )
