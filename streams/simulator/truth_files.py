"""Write the ground truth to a directory: CSV tables (large ones gzipped) and ``index.json``.

``index.json`` lists every file with its row count, a description and the meaning of each
column, plus the exact config of the run, so a benchmark can check it scores against the
truth of the events it consumed.

>>> import tempfile
>>> from streams.simulator import SimulationConfig, Simulator
>>> sim = Simulator(SimulationConfig(days=2, skus=5, stores=2, customers=20))
>>> _ = list(sim.events())
>>> with tempfile.TemporaryDirectory() as tmp:
...     paths = write_ground_truth(sim.truth, Path(tmp))
...     sorted(p.name for p in paths)[:3]
['base.csv', 'calendar.csv', 'customers.csv.gz']
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streams.simulator.truth import GroundTruth

__all__ = ["write_ground_truth"]

# file -> (frame method, gzip?, description, {column: meaning}); columns not listed are
# self-explanatory ids.
_FILES: dict[str, tuple[str, bool, str, dict[str, str]]] = {
    "demand": (
        "demand_frame",
        True,
        "Per SKU x store x day (SKUs on sale that day): the Poisson means the units were drawn "
        "from and the draws. Sum over a day for chain totals.",
        {
            "expected_units": "expected_store_units + expected_online_units",
            "expected_store_units": "Poisson mean of STORE-channel units",
            "expected_online_units": "Poisson mean of WEB/APP units fulfilled by the store",
            "demand_units": "Poisson draw (store + online)",
            "sold_units": "units on ORDER_PLACED lines; equals demand_units unless lost_sales",
            "sold_online_units": "of which WEB/APP",
        },
    ),
    "sku_days": (
        "sku_day_frame",
        True,
        "Per SKU x day: shelf price and the multiplicative demand components.",
        {
            "price_factor": "(price / launch price) ** elasticity",
            "promotion_lift": "(1 - discount_rate) ** elasticity while a promotion runs, else 1",
            "ramp": "launch ramp-up 1 - exp(-(age + 1) / ramp_days); 1 for SKUs older than the run",
            "recommendation_lift": "online multiplier: 1 + lift[slot] if on the slate, else 1",
            "yearly_factor": "yearly seasonality of the SKU's department",
        },
    ),
    "calendar": (
        "calendar_frame",
        False,
        "Per day: weekly and holiday multipliers (store and online channel) and the holiday "
        "calendar used (retail events and the country's public holidays).",
        {"promotion_boost": "multiplier on the rate at which promotions start"},
    ),
    "seasonality": ("seasonality_frame", False, "Per department x day: yearly factor.", {}),
    "base": (
        "base_frame",
        False,
        "Per SKU x store: base units/day before calendar, price, promotion, ramp and "
        "recommendation effects. expected_store_units = base_units * (1 - online_share) * "
        "weekday_store * holiday_store * yearly * price_factor * promotion_lift * ramp; online "
        "alike with online_share, the online factors and recommendation_lift.",
        {},
    ),
    "customers": (
        "customer_frame",
        True,
        "Per customer: hidden purchase rate and dropout probability (BG/NBD-like), churn date.",
        {
            "purchase_rate_per_day": "base purchases per day (scaled by the day's calendar factor)",
            "dropout_probability": "chance of leaving for good right after each purchase",
            "churn_date": "first day the customer is inactive (empty: still active)",
        },
    ),
    "skus": ("sku_frame", False, "Per SKU: hierarchy, supplier, tier, launch, elasticity.", {}),
    "stores": ("store_frame", False, "Per store: region, size and demand factor.", {}),
    "suppliers": (
        "supplier_frame",
        False,
        "Per supplier: lead time ~ Gamma(lead_shape, mean_lead_days), fill rate (share of POs "
        "shipped complete), incident rate per shipment.",
        {},
    ),
    "disruptions": (
        "disruption_frame",
        False,
        "Supplier disruption episodes (end_date inclusive); POs created inside get lead times x "
        "lead_multiplier and fill rates x fill_factor.",
        {},
    ),
    "promotions": ("promotion_frame", False, "Promotions (end_date inclusive) and true lift.", {}),
    "price_changes": ("price_change_frame", False, "Shelf-price changes (PRICE_CHANGED).", {}),
    "recommendations": (
        "recommendation_frame",
        True,
        "Per day x slot: the SKU the recommender showed and the true online-demand lift.",
        {},
    ),
    "purchase_orders": (
        "purchase_order_frame",
        True,
        "Per purchase order: committed and actual lead time, quantities, disruption episode.",
        {"lead_days": "received on created_date + lead_days", "damaged": "written off on receipt"},
    ),
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def _iso_days(column: pd.Series) -> pd.Series:
    """Dates as YYYY-MM-DD text (empty for NaT), formatting each distinct day once."""
    codes, days = pd.factorize(column)
    text = np.array([*days.strftime("%Y-%m-%d"), None], dtype=object)
    return pd.Series(text[codes], index=column.index)  # code -1 (NaT) picks the None


def write_ground_truth(truth: GroundTruth, directory: Path) -> list[Path]:
    """Write every truth table and ``index.json`` into ``directory``; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    index: dict[str, Any] = {
        "config": {k: _jsonable(v) for k, v in dataclasses.asdict(truth.config).items()},
        "days_generated": len(truth.days),
        "first_date": truth.config.start_date.isoformat(),
        "dates": "ISO days (UTC); event times in the topics are UTC epoch milliseconds",
        "files": {},
    }
    for name, (method, gzip, description, columns) in _FILES.items():
        frame_of: Callable[[], pd.DataFrame] = getattr(truth, method)
        frame = frame_of()
        path = directory / (f"{name}.csv.gz" if gzip else f"{name}.csv")
        for col in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[col]):
                frame[col] = _iso_days(frame[col])
        # Level 1: the big tables are mostly digits, higher levels cost 3x the time for ~25 %.
        compression: Any = {"method": "gzip", "compresslevel": 1, "mtime": 0} if gzip else None
        frame.to_csv(path, index=False, compression=compression)
        written.append(path)
        index["files"][path.name] = {
            "rows": len(frame),
            "description": description,
            "columns": {c: columns.get(c, "") for c in frame.columns},
        }
    path = directory / "index.json"
    path.write_text(json.dumps(index, indent=2) + "\n")
    written.append(path)
    return written
