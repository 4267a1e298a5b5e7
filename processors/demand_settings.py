"""Knobs of the demand flow (docs/demand.md), in their own module so the engine stays short.

>>> DemandSettings().horizon_days, DemandSettings(retire_after_days=0).retire_after_days
(28, 0)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DemandSettings"]


@dataclass(frozen=True)
class DemandSettings:
    """Knobs of the demand flow (docs/demand.md)."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 2  # 2: retire_after_days, key_ttl_days

    horizon_days: int = 28
    lateness_ms: int = 2 * 3_600_000  # a day closes this long after its end (event time)
    timezone: str | None = None  # None: settings.run.timezone
    country: str = "US"  # public holidays (``holidays`` package)
    service_level: float = 0.95  # target cycle service level of the reorder policy
    default_lead_days: float = 7.0  # until a lead time is learned from purchase orders
    scored_horizons: tuple[int, ...] = (1, 7, 14, 28)
    learning_rate: float = 0.05  # calendar GLM, one step per department-day
    series_learning_rate: float = 0.01  # promotion/price/age GLM
    alpha_min: float = 0.05  # slowest level smoothing (about a 20-day memory)
    prior_days: float = 7.0  # weight of the cold-start prior, in days of history
    series_features: bool = True  # promotion share and price features
    group_alpha: float = 0.0  # middle-out category x store smoothing (0: off; measured)
    click_features: bool = False  # product views as a leading signal (measured: no gain)
    adagrad: bool = False  # per-feature AdaGrad steps for the calendar GLM
    fourier_terms: int = 0  # yearly Fourier pairs (measured: 3 pairs hurt, docs/demand.md)
    event_effects: bool = True  # one-shot pooled holiday/event multipliers (models/demand_events)
    event_priors: bool = True  # start events from hand-set retail priors (False: from 1x)
    event_prior_weight: float = 0.1  # a prior counts as this many occurrences
    event_level_weight: float = 0.25  # how much an event day moves the levels (1: fully)
    drift_alpha: float = 0.1  # department level-drift smoothing (0: off)
    drift_damping: float = 0.95  # damped extrapolation of that drift (0: level lag only)
    # A discontinued SKU's series with no units for this many closed days is retired (0: never).
    retire_after_days: int = 56
    # forecast:* and reorder:* hashes expire this long after their last write (0: never), so
    # the keys of retired series go away; live ones are rewritten daily (forecasts) or on
    # every inventory snapshot (reorder), which renews the TTL.
    key_ttl_days: int = 60
