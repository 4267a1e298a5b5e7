"""The calendar: weekly and yearly seasonality and holiday effects, per simulated day.

Store and online demand get separate day factors because they react differently: stores
peak on Saturdays and close on Christmas Day, online peaks on Sunday evenings and on Cyber
Monday. Yearly seasonality is a smooth curve per department (two Fourier harmonics on top
of a shared December peak), normalised so its mean over a year is 1.

Holiday effects come from two sources, retail rules first:

* retail calendar (any country): Black Friday (the day after the fourth Thursday of
  November), its weekend, Cyber Monday, the week before Christmas, Christmas Eve,
  Christmas Day (stores closed), the day after Christmas, New Year's Eve;
* public holidays of ``config.country`` from the ``holidays`` package: Thanksgiving and
  New Year's Day depress store traffic, any other public holiday lifts it a little.

>>> from datetime import date
>>> from streams.simulator.config import SimulationConfig
>>> cal = Calendar(SimulationConfig(), np.random.default_rng(0))
>>> bf = cal.day(date(2024, 11, 29))
>>> bf.holiday_name, bf.holiday_store, cal.day(date(2024, 12, 25)).store_closed
('Black Friday', 4.0, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import holidays as holidays_pkg
import numpy as np

from streams.simulator.config import SimulationConfig

__all__ = ["Calendar", "DayFactors", "thanksgiving"]

# Monday .. Sunday, normalised to mean 1 below.
_WEEKLY_STORE = np.array([0.85, 0.80, 0.85, 0.95, 1.10, 1.35, 1.10])
_WEEKLY_ONLINE = np.array([1.05, 1.00, 1.00, 0.95, 0.90, 0.95, 1.15])
_PEAK_DAY_OF_YEAR = 349  # mid-December
_SHARED_AMPLITUDE = 0.12


@dataclass(frozen=True)
class DayFactors:
    """Every calendar multiplier of one day (1.0 when the mechanism is switched off)."""

    date: date
    weekday_store: float
    weekday_online: float
    yearly: np.ndarray  # one factor per department
    holiday_name: str | None
    holiday_store: float
    holiday_online: float
    promo_boost: float  # more promotions start around Black Friday and Christmas

    @property
    def store_closed(self) -> bool:
        return self.holiday_store == 0.0

    @property
    def store_factor(self) -> float:
        """Department-averaged store multiplier (customer visit rates scale with it)."""
        return self.weekday_store * self.holiday_store * float(self.yearly.mean())

    @property
    def online_factor(self) -> float:
        return self.weekday_online * self.holiday_online * float(self.yearly.mean())


def thanksgiving(year: int) -> date:
    """Fourth Thursday of November."""
    first = date(year, 11, 1)
    return first + timedelta(days=(3 - first.weekday()) % 7 + 21)


class Calendar:
    """Day factors for any date, from fixed per-run seasonality parameters."""

    def __init__(self, config: SimulationConfig, rng: np.random.Generator) -> None:
        self._cfg = config
        self._weekly_store = _WEEKLY_STORE / _WEEKLY_STORE.mean()
        self._weekly_online = _WEEKLY_ONLINE / _WEEKLY_ONLINE.mean()
        # Per department: cos/sin coefficients of harmonics 1 and 2 (log scale).
        self._coef = rng.normal(0.0, 0.08, size=(config.departments, 4))
        grid = np.arange(365) / 365.0
        self._norm = np.array([self._raw_yearly(grid, d).mean() for d in range(config.departments)])
        self._public: dict[int, dict[date, str]] = {}
        self._check_country()

    def _check_country(self) -> None:
        if not self._cfg.holidays:
            return
        try:
            holidays_pkg.country_holidays(self._cfg.country, years=self._cfg.start_date.year)
        except NotImplementedError:
            raise ValueError(
                f"country {self._cfg.country!r} is not known to the holidays package"
            ) from None

    def _raw_yearly(self, t: np.ndarray, dept: int) -> np.ndarray:
        a1, b1, a2, b2 = self._coef[dept]
        w = 2.0 * math.pi * t
        log_f = (
            _SHARED_AMPLITUDE * np.cos(w - 2.0 * math.pi * _PEAK_DAY_OF_YEAR / 365.0)
            + a1 * np.cos(w)
            + b1 * np.sin(w)
            + a2 * np.cos(2 * w)
            + b2 * np.sin(2 * w)
        )
        return np.exp(log_f)

    def public_holidays(self, year: int) -> dict[date, str]:
        """Public holidays of the configured country in ``year`` (cached)."""
        if year not in self._public:
            found = holidays_pkg.country_holidays(self._cfg.country, years=year)
            self._public[year] = {d: str(name) for d, name in sorted(found.items())}
        return self._public[year]

    def holiday(self, d: date) -> tuple[str | None, float, float]:
        """(name, store multiplier, online multiplier) of ``d``; retail rules win."""
        tg = thanksgiving(d.year)
        black_friday, cyber_monday = tg + timedelta(days=1), tg + timedelta(days=4)
        public = self.public_holidays(d.year)
        if d == black_friday:
            return "Black Friday", 4.0, 3.0
        if black_friday < d < cyber_monday:
            return "Black Friday weekend", 1.6, 1.8
        if d == cyber_monday:
            return "Cyber Monday", 1.1, 4.0
        if d.month == 12:
            if 17 <= d.day <= 23:
                return "Week before Christmas", 1.5, 1.4
            if d.day == 24:
                return "Christmas Eve", 1.8, 1.2
            if d.day == 25:
                return "Christmas Day", 0.0, 0.4  # stores closed
            if d.day == 26:
                return "Day after Christmas", 1.3, 1.2
            if d.day == 31:
                return "New Year's Eve", 1.2, 1.0
        name = public.get(d)
        if name is None:
            return None, 1.0, 1.0
        if d == tg:
            return name, 0.4, 1.3
        if d.month == 1 and d.day == 1:
            return name, 0.5, 0.9
        return name, 1.15, 1.1

    def promo_boost(self, d: date) -> float:
        tg = thanksgiving(d.year)
        if tg - timedelta(days=6) <= d <= tg + timedelta(days=4):
            return 4.0
        if d.month == 12 and 10 <= d.day <= 23:
            return 2.0
        return 1.0

    def day(self, d: date) -> DayFactors:
        cfg = self._cfg
        wd = d.weekday()
        if cfg.yearly_seasonality:
            t = np.array([(d.timetuple().tm_yday - 1) / 365.0])
            yearly = np.array(
                [self._raw_yearly(t, k)[0] / self._norm[k] for k in range(cfg.departments)]
            )
        else:
            yearly = np.ones(cfg.departments)
        name, h_store, h_online = self.holiday(d) if cfg.holidays else (None, 1.0, 1.0)
        return DayFactors(
            date=d,
            weekday_store=float(self._weekly_store[wd]) if cfg.weekly_seasonality else 1.0,
            weekday_online=float(self._weekly_online[wd]) if cfg.weekly_seasonality else 1.0,
            yearly=yearly,
            holiday_name=name,
            holiday_store=h_store,
            holiday_online=h_online,
            promo_boost=self.promo_boost(d) if cfg.holidays else 1.0,
        )
