"""Daily demand forecaster: small River GLMs on top of tiny per-series levels.

Design (measurements in docs/demand.md)::

    E[y(s, t)] = level(s) * exp(w_cal . x_cal(dept(s), t) + w_ser . x_ser(s, t))

- ``level(s)``: the series' deseasonalised daily rate, an exponentially weighted mean of
  ``y / multiplier`` (a few floats per series, so hundreds of thousands of series fit),
  optionally rescaled "middle-out" so the series of a category x store add up to that
  group's faster-smoothed rate;
- ``w_cal``: ONE River ``LinearRegression`` with the Poisson loss (a log-link GLM) over
  calendar features (weekday, holidays, retail events, optional yearly Fourier terms), each
  also crossed with the department, learned from one sample per department per day;
- ``w_ser``: a second Poisson GLM, without intercept, over series features: promotion share,
  price against launch price, and launch-age buckets (the ramp-up of a new SKU).

The Poisson loss fits the mean of counts, zeros included, so intermittent series need no
log transform, and forecasts are positive by construction. The model is linear in the
features, so the forecast for every series and horizon is assembled from per-department
calendar terms and per-series terms (O(N + H) dot products, not O(N x H) predictions).

Cold start: a new series starts at a prior level (from its hierarchy and attributes, see
:class:`processors.reconcile.ColdStartPriors`) that counts as ``prior_days`` days of
history; the smoothing weight ``max(alpha_min, 1 / (days + 1))`` over days that include
the prior hands over to the series' own history as days accumulate.

The calendar GLM is :class:`models.demand_glm.DemandModel`.
"""

from __future__ import annotations

import math

import numpy as np
from river import linear_model, optim

from models.demand_events import EventEffects
from models.demand_glm import ETA_CLIP, DemandModel
from models.demand_quantiles import ResidualQuantiles
from processors.calendar_features import from_epoch_day

__all__ = ["DemandForecaster", "DemandModel", "ResidualQuantiles"]

_AGE_EDGES = (4, 11, 28)  # age buckets [0,4), [4,11), [11,28) days; older: no feature
_VOLUME_HALF_WEIGHT = 10.0  # expected units/day at which a department-day counts half


class DemandForecaster:
    """Per-series levels (numpy arrays, grown as series appear) around two small GLMs.

    ``calendar`` learns from ONE sample per department per day (the department's units
    against the sum of its series' expected units without calendar effects): its gradient
    equals the sum of the per-series gradients, without letting thousands of same-day
    samples drag the intercept towards today's value (measured: that drift made the total
    forecast swing by +-40% from day to day). ``series`` learns the promotion, price and
    launch-age effects from the series that have such features, with no intercept.
    """

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 3  # 2: event effects, level drift; 3: series can be retired

    def __init__(
        self,
        *,
        horizon: int = 28,
        country: str = "US",
        lr: float = 0.05,
        series_lr: float = 0.01,
        alpha_min: float = 0.05,
        prior_days: float = 7.0,
        series_features: bool = True,
        group_alpha: float = 0.0,
        fourier_terms: int = 0,
        adagrad: bool = False,
        event_effects: bool = True,
        event_priors: bool = True,
        event_prior_weight: float = 0.1,
        event_level_weight: float = 0.25,
        drift_alpha: float = 0.1,
        drift_damping: float = 0.95,
    ) -> None:
        self.horizon = horizon
        # One-shot pooled event effects (models/demand_events.py); None: the GLM's flags.
        self.events = (
            EventEffects(None if event_priors else {}, prior_weight=event_prior_weight)
            if event_effects
            else None
        )
        # An event day's demand is mostly the event: it moves the levels this much less.
        self.event_level_weight = event_level_weight
        # Level drift per department (0: off): the levels are ~20-day means, so they lag a
        # seasonal rise or fall; ``drift`` is the smoothed log ratio of today's
        # deseasonalised units to the levels (the lag's size), extrapolated with damping.
        self.drift_alpha = drift_alpha
        self.drift_damping = drift_damping
        self.drift = np.zeros(0)
        self.group_alpha = group_alpha
        self.alpha_min = alpha_min
        self.prior_days = prior_days
        self.series_features = series_features
        self.calendar = DemandModel(
            country=country,
            lr=lr,
            intercept=False,
            fourier_terms=fourier_terms,
            adagrad=adagrad,
            event_flags=not event_effects,
        )
        self.series = linear_model.LinearRegression(
            optimizer=optim.SGD(series_lr),
            loss=optim.losses.Poisson(),
            intercept_lr=0.0,
            clip_gradient=2.0,
        )
        self.level = np.zeros(0)
        self.days = np.zeros(0)  # days of own history (plus prior pseudo-days)
        self.born = np.zeros(0, dtype=np.int64)  # first day on sale (for age features)
        self.code = np.zeros(0, dtype=np.int64)  # department code
        self.group = np.zeros(0, dtype=np.int64)  # middle-out group (category x store node)
        self.group_level = np.zeros(0)  # fast-smoothed deseasonalised rate per group
        self.departments: list[str] = []
        self.promo = np.zeros(0)  # share of units sold on promotion, last closed day
        self.price = np.zeros(0)  # log(price / launch price), clipped
        self.views = np.zeros(0)  # log ratio of the SKU's product views to its usual views
        self.version = 0  # learned days

    def __len__(self) -> int:
        return len(self.level)

    def _code(self, department: str) -> int:
        if department not in self.departments:
            self.departments.append(department)
            self.drift = np.append(self.drift, 0.0)
        return self.departments.index(department)

    def add_series(
        self, department: str, born_day: int, prior: float | None, group: int = 0
    ) -> int:
        """Append a series with a prior level (None: no usable prior, learn from scratch).

        ``group`` is the series' middle-out group (0-based, append-only).
        """
        self.level = np.append(self.level, prior if prior is not None else 0.0)
        self.group = np.append(self.group, group)
        if group >= len(self.group_level):
            self.group_level = np.append(
                self.group_level, np.zeros(group + 1 - len(self.group_level))
            )
        self.group_level[group] += prior or 0.0
        self.days = np.append(self.days, self.prior_days if prior is not None else 0.0)
        self.born = np.append(self.born, born_day)
        self.code = np.append(self.code, self._code(department))
        self.promo = np.append(self.promo, 0.0)
        self.price = np.append(self.price, 0.0)
        self.views = np.append(self.views, 0.0)
        return len(self.level) - 1

    def retain(self, keep: np.ndarray, groups: np.ndarray) -> None:
        """Keep the series where ``keep`` is True (retired series leave every array).

        ``groups``: the old index of each remaining middle-out group, increasing (from
        :meth:`processors.reconcile.Hierarchy.retain`, level ``category_store``). The
        shared GLMs, departments and drift keep what they learned from retired series.
        """
        rows = np.nonzero(keep)[0]
        new_of_old = np.full(max(len(self.group_level), 1), -1, dtype=np.int64)
        groups = groups[groups < len(self.group_level)]
        new_of_old[groups] = np.arange(len(groups))
        self.group_level = self.group_level[groups]
        self.group = new_of_old[self.group[rows]]
        for name in ("level", "days", "born", "code", "promo", "price", "views"):
            setattr(self, name, getattr(self, name)[rows])

    def set_department(self, i: int, department: str, group: int | None = None) -> None:
        self.code[i] = self._code(department)
        if group is not None:
            if group >= len(self.group_level):
                extra = np.zeros(group + 1 - len(self.group_level))
                self.group_level = np.append(self.group_level, extra)
            self.group[i] = group

    def effective_level(self) -> np.ndarray:
        """Middle-out level: slow per-series shares of a fast-smoothed group rate.

        A series' own level (slow: intermittent series are noisy) sets its share of its
        group; the group's deseasonalised rate, smoothed fast (its sum is far less noisy),
        sets the magnitude, so a shift in demand reaches every series in days, not weeks.
        """
        if self.group_alpha <= 0.0 or not len(self.level):
            return self.level
        sums = np.bincount(self.group, weights=self.level, minlength=len(self.group_level))
        scale = np.where(sums > 0.0, self.group_level / np.where(sums > 0.0, sums, 1.0), 1.0)
        return self.level * np.clip(scale[self.group], 0.2, 5.0)

    def _age_bucket(self, day: int) -> np.ndarray:
        """Age bucket per series on ``day`` (-1: not young, or not launched yet)."""
        age = day - self.born
        bucket = np.searchsorted(np.array(_AGE_EDGES), age, side="right")
        return np.where((age >= 0) & (bucket < len(_AGE_EDGES)), bucket, -1)

    def _series_eta(self, day: int | None) -> np.ndarray:
        """Series part of the log multiplier, vectorised (``day`` None: no age term)."""
        w = self.series.weights
        eta = np.zeros(len(self.level))
        if self.series_features:
            eta += w.get("promo", 0.0) * self.promo + w.get("price", 0.0) * self.price
            eta += w.get("views", 0.0) * self.views
        if day is not None:
            age_w = np.array([w.get(f"age_{b}", 0.0) for b in range(len(_AGE_EDGES))] + [0.0])
            eta += age_w[self._age_bucket(day)]
        return eta

    def _series_x(self, i: int, bucket: int) -> dict[str, float]:
        x: dict[str, float] = {}
        if self.series_features:
            if self.promo[i]:
                x["promo"] = float(self.promo[i])
            if self.price[i]:
                x["price"] = float(self.price[i])
            if self.views[i]:
                x["views"] = float(self.views[i])
        if bucket >= 0:
            x[f"age_{bucket}"] = 1.0
        return x

    def event(self, day: int) -> str | None:
        """The calendar event of ``day`` when event effects are on, else None."""
        if self.events is None:
            return None
        return self.calendar.calendar.event(from_epoch_day(day))

    def _calendar_eta(self, day: int, with_event: bool = True) -> np.ndarray:
        w = self.calendar.weights()
        eta = np.array(
            [self.calendar.eta(self.calendar.calendar_x(d, day), w) for d in self.departments]
        )
        event = self.event(day) if with_event else None
        if event is not None and self.events is not None:
            eta += np.array([self.events.effect(event, d) for d in self.departments])
        return eta

    def learn_day(self, day: int, y: np.ndarray) -> None:
        """Learn the closed ``day``'s actuals ``y`` (one per series), then update the levels."""
        if len(y) != len(self.level):
            raise ValueError(f"expected {len(self.level)} actuals, got {len(y)}")
        if not len(y):
            return
        event = self.event(day)
        cal = np.clip(self._calendar_eta(day, with_event=False), -ETA_CLIP, ETA_CLIP)
        ser = self._series_eta(day)
        active = (self.days > 0.0) & (self.level > 0.0)
        level = self.effective_level()
        base = level * np.exp(ser)
        if event is not None and self.events is not None:
            # Learn the event from the whole chain first; the weekday GLM does not learn
            # from event days (their residual is the event, not the weekday).
            exp_dept, y_dept = {}, {}
            for g, dept in enumerate(self.departments):
                rows = active & (self.code == g)
                exp_dept[dept] = float(base[rows].sum() * math.exp(cal[g]))
                y_dept[dept] = float(y[rows].sum())
            self.events.observe(event, y_dept, exp_dept)
            cal = np.clip(self._calendar_eta(day), -ETA_CLIP, ETA_CLIP)
        for g, dept in enumerate(self.departments):
            rows = active & (self.code == g)
            expected = float(base[rows].sum())
            if expected > 0.0 and (event is None or self.events is None):
                x = self.calendar.calendar_x(dept, day)
                # Weight ~1 for a department selling tens of units a day, less for a
                # handful (a ratio of tiny counts is noise: it made the multiplier jitter).
                weight = expected / (expected + _VOLUME_HALF_WEIGHT)
                self.calendar.learn_one(x, float(y[rows].sum()), level=expected, weight=weight)
        offset = level * np.exp(cal[self.code])
        buckets = self._age_bucket(day)
        has_x = active & (
            (buckets >= 0) | (self.promo != 0.0) | (self.price != 0.0) | (self.views != 0.0)
        )
        for i in np.nonzero(has_x)[0]:
            x = self._series_x(int(i), int(buckets[i]))
            if x and offset[i] > 0.0:
                self.series.learn_one(x, float(y[i] / offset[i]), w=min(float(offset[i]), 1.0))
        mult = np.exp(np.clip(cal[self.code] + ser, -ETA_CLIP, ETA_CLIP))
        z = y / np.clip(mult, 0.05, 20.0)
        if self.drift_alpha > 0.0 and event is None:
            self._learn_drift(z, active & (self.days >= 28.0))
        alpha = np.maximum(self.alpha_min, 1.0 / (self.days + 1.0))
        step = 1.0 if event is None else self.event_level_weight
        self.level += step * alpha * (z - self.level)
        group_z = np.bincount(self.group, weights=z, minlength=len(self.group_level))
        fresh = np.bincount(self.group, weights=(self.days == 0.0), minlength=len(self.group_level))
        sums = np.bincount(self.group, weights=self.level, minlength=len(self.group_level))
        # a group whose series are all new starts from its first day; others smooth fast
        counts = np.bincount(self.group, minlength=len(self.group_level))
        new_group = (fresh == counts) & (counts > 0)
        self.group_level += self.group_alpha * (group_z - self.group_level)
        self.group_level[new_group] = sums[new_group]
        self.days += step
        self.version += 1

    def _learn_drift(self, z: np.ndarray, rows: np.ndarray) -> None:
        n = len(self.departments)
        num = np.bincount(self.code[rows], weights=z[rows], minlength=n)
        den = np.bincount(self.code[rows], weights=self.level[rows], minlength=n)
        seen = den > 1.0  # a ratio of a handful of units is noise
        r = np.log((num + 0.5) / (den + 0.5))
        self.drift[seen] += self.drift_alpha * (r[seen] - self.drift[seen])

    def _drift_eta(self, hz: int) -> np.ndarray:
        """(departments, hz) log correction: the level's lag, then a damped slope."""
        lag = (1.0 - self.alpha_min) / self.alpha_min  # mean age of an EWMA level, in days
        phi = self.drift_damping
        steps = np.cumsum(phi ** np.arange(1, hz + 1)) if phi > 0.0 else np.zeros(hz)
        return self.drift[:, None] * (1.0 + steps[None, :] / lag)

    def observe_features(
        self, promo: np.ndarray, price: np.ndarray, views: np.ndarray | None = None
    ) -> None:
        """Series features as of the closed day (used for the next day's forecasts)."""
        self.promo = promo
        self.price = np.clip(price, -1.0, 1.0)
        self.views = np.zeros(len(promo)) if views is None else np.clip(views, -1.5, 1.5)

    def forecast(self, origin: int) -> np.ndarray:
        """Mean forecasts, shape (N, horizon), for days origin+1 .. origin+horizon."""
        hz = self.horizon
        if not len(self.level):
            return np.zeros((0, hz))
        cal = np.stack([self._calendar_eta(origin + h) for h in range(1, hz + 1)], axis=1)
        eta = cal[self.code] + self._series_eta(None)[:, None]
        young = np.nonzero(origin + 1 - self.born < _AGE_EDGES[-1])[0]
        if len(young):
            w = self.series.weights
            age_w = np.array([w.get(f"age_{b}", 0.0) for b in range(len(_AGE_EDGES))] + [0.0])
            for h in range(1, hz + 1):
                eta[young, h - 1] += age_w[self._age_bucket(origin + h)[young]]
        if self.drift_alpha > 0.0:
            eta += self._drift_eta(hz)[self.code]
        level = self.effective_level()
        return level[:, None] * np.exp(np.clip(eta, -ETA_CLIP, ETA_CLIP))
