"""The calendar GLM of the demand forecaster: one River ``LinearRegression`` with the Poisson
loss (a log-link GLM) over calendar features, each also crossed with the department.

>>> m = DemandModel(country="US")
>>> x = m.calendar_x("D1", 20_000)
>>> for _ in range(200):
...     m.learn_one(x, 4.0, level=2.0)
>>> round(m.predict_one(x, level=2.0), 1)
4.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from river import linear_model, optim

from models.base import OnlineModel
from processors.calendar_features import CalendarFeatures, from_epoch_day

__all__ = ["ETA_CLIP", "DemandModel"]

ETA_CLIP = 6.0  # exp(6) ~ 400x: a guard against a diverging step, never reached in practice

_CROSSED = ("sin_1", "cos_1", "sin_2", "cos_2", "holiday", "black_friday", "cyber_monday",
            "bf_weekend", "christmas_eve", "week_before_christmas", "after_christmas",
            "to_christmas", "to_black_friday")  # fmt: skip
# Event indicators: with event effects on (the default) events leave the GLM for
# models/demand_events.py, which learns each from one occurrence.
_EVENT_FLAGS = frozenset({"holiday", "black_friday", "cyber_monday", "bf_weekend",
                          "christmas_eve", "week_before_christmas", "after_christmas"})  # fmt: skip


class DemandModel(OnlineModel):
    """The global log-link GLM (River ``LinearRegression`` with the Poisson loss)."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 2  # 2: event flags can leave the GLM

    def __init__(
        self,
        *,
        country: str = "US",
        lr: float = 0.05,
        clip: float = 5.0,
        intercept: bool = True,
        fourier_terms: int = 3,
        adagrad: bool = False,
        event_flags: bool = True,
    ) -> None:
        self.calendar = CalendarFeatures(country, fourier_terms)
        self.event_flags = event_flags
        self.glm = linear_model.LinearRegression(
            # AdaGrad: per-feature steps, so a retail event seen once a year still moves
            # its weight as far as the weekday weights move in a week.
            optimizer=optim.AdaGrad(lr) if adagrad else optim.SGD(lr),
            loss=optim.losses.Poisson(),
            # Without an intercept, a day's error moves only the weights of features active
            # that day: the per-series levels already carry the scale.
            intercept_lr=lr if intercept else 0.0,
            clip_gradient=clip,
        )
        self._cal_cache: dict[tuple[str, int], dict[str, float]] = {}

    def calendar_x(self, department: str, day: int) -> dict[str, float]:
        """Calendar features of ``day`` (epoch day), global and crossed with ``department``."""
        key = (department, day)
        x = self._cal_cache.get(key)
        if x is None:
            base = self.calendar.features(from_epoch_day(day))
            if not self.event_flags:
                base = {k: v for k, v in base.items() if k not in _EVENT_FLAGS}
            x = dict(base)
            for name in _CROSSED:
                v = base.get(name, 0.0)
                if v:
                    x[f"{department}|{name}"] = v
            x[f"{department}|dow_{from_epoch_day(day).weekday()}"] = 1.0
            if len(self._cal_cache) > 8192:
                self._cal_cache.clear()
            self._cal_cache[key] = x
        return x

    def eta(self, x: Mapping[str, float], weights: Mapping[str, float] | None = None) -> float:
        """Log multiplier ``w . x + b`` (pass ``weights`` from :meth:`weights` in loops)."""
        w = self.glm.weights if weights is None else weights
        return self.glm.intercept + sum(w.get(k, 0.0) * v for k, v in x.items())

    def weights(self) -> dict[str, float]:
        return dict(self.glm.weights)

    def learn_one(
        self, x: Mapping[str, float], y: float, level: float = 1.0, weight: float = 1.0
    ) -> None:
        """Poisson GLM step with offset ``log(level)``, scale-free: gradient ``exp(eta) - y/level``.

        (The unnormalised offset gradient ``level * exp(eta) - y`` would make steps grow
        with volume; here one department-day is one step whatever its size.)
        """
        if level <= 0.0:
            return
        self.glm.learn_one(dict(x), y / level, w=weight)

    def predict_one(self, x: Mapping[str, float], level: float = 1.0) -> float:
        return level * math.exp(max(-ETA_CLIP, min(ETA_CLIP, self.eta(x))))

    @classmethod
    def _check_instance(cls) -> DemandModel:
        return cls()

    @classmethod
    def _check_samples(cls) -> list[tuple[Any, Any]]:
        m = cls()
        return [(m.calendar_x("D1", 20_000 + i), float(i % 3)) for i in range(10)] + [
            ({"dow_1": 1.0}, 2.0)
        ]

    def _check_learn(self, x: Any, y: Any) -> None:
        self.learn_one(x, y)

    def _check_predict(self, x: Any) -> Any:
        return self.predict_one(x)
