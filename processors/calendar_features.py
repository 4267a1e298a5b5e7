"""Calendar features of a trading day: weekday, yearly Fourier terms, holidays, retail events.

The features depend on the date only, so they are known for every future day of the
forecast horizon (unlike prices or promotions). Holidays come from the ``holidays`` package
for the configured country; the retail events it does not know (Black Friday, Cyber Monday,
Christmas Eve, the week before Christmas) are computed here. "Days to event" features ramp
from 0 (event four weeks away or more) to 1 (event day), which lets a linear model learn the
build-up before Christmas and Black Friday.

>>> cal = CalendarFeatures("US")
>>> f = cal.features(date(2024, 11, 29))
>>> f["black_friday"], f["dow_4"], f["holiday"]
(1.0, 1.0, 0.0)
>>> cal.features(date(2024, 12, 25))["holiday"]
1.0
>>> round(cal.features(date(2024, 12, 18))["to_christmas"], 3)
0.786
>>> cal.event(date(2024, 11, 29)), cal.event(date(2024, 11, 28)), cal.event(date(2024, 3, 5))
('black_friday', 'Thanksgiving Day', None)

:meth:`event` names the ONE calendar event of a day (retail events first, then the public
holiday's name): the demand model keeps a multiplicative effect per event name, learned
in one shot from the whole chain (:mod:`models.demand_events`).
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import holidays

__all__ = ["RETAIL_EVENTS", "CalendarFeatures", "black_friday", "epoch_day", "from_epoch_day"]

_EPOCH = date(1970, 1, 1)
_RAMP_DAYS = 28.0  # how far ahead the "days to event" ramps start


def epoch_day(d: date) -> int:
    """Days since 1970-01-01 (the day index used everywhere in the demand flow)."""
    return (d - _EPOCH).days


def from_epoch_day(n: int) -> date:
    return _EPOCH + timedelta(days=n)


def black_friday(year: int) -> date:
    """The day after the fourth Thursday of November."""
    nov1 = date(year, 11, 1)
    first_thu = nov1 + timedelta(days=(3 - nov1.weekday()) % 7)
    return first_thu + timedelta(days=22)


# Retail events the ``holidays`` package does not know, in the order they take precedence.
RETAIL_EVENTS: tuple[str, ...] = (
    "black_friday",
    "bf_weekend",
    "cyber_monday",
    "week_before_christmas",
    "christmas_eve",
    "day_after_christmas",
    "new_years_eve",
)


def retail_event(d: date) -> str | None:
    """The retail event of ``d`` (any country), or None.

    >>> retail_event(date(2024, 12, 2)), retail_event(date(2024, 12, 25))
    ('cyber_monday', None)
    """
    bf = black_friday(d.year)
    if d == bf:
        return "black_friday"
    if bf < d < bf + timedelta(days=3):
        return "bf_weekend"
    if d == bf + timedelta(days=3):
        return "cyber_monday"
    if d.month == 12:
        if 17 <= d.day <= 23:
            return "week_before_christmas"
        if d.day == 24:
            return "christmas_eve"
        if d.day == 26:
            return "day_after_christmas"
        if d.day == 31:
            return "new_years_eve"
    return None


def _ramp(days_before: int) -> float:
    """1 on the event day, falling linearly to 0 at ``_RAMP_DAYS`` before it, 0 after."""
    if days_before < 0 or days_before >= _RAMP_DAYS:
        return 0.0
    return 1.0 - days_before / _RAMP_DAYS


class CalendarFeatures:
    """Features of a date for one country; results are cached per date (a few per day)."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(self, country: str = "US", fourier_terms: int = 3) -> None:
        self.country = country
        self.fourier_terms = fourier_terms
        self._holidays: holidays.HolidayBase | None = None
        self._cache: dict[date, dict[str, float]] = {}

    def __getstate__(self) -> dict[str, object]:
        # The holiday calendar and cache rebuild on demand: keep snapshots small.
        return {"country": self.country, "fourier_terms": self.fourier_terms}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.country = str(state["country"])
        self.fourier_terms = int(state["fourier_terms"])  # type: ignore[call-overload]
        self._holidays = None
        self._cache = {}

    def is_holiday(self, d: date) -> bool:
        if self._holidays is None:
            try:
                self._holidays = holidays.country_holidays(self.country)
            except NotImplementedError:  # unknown country code: no public holidays
                self._holidays = holidays.HolidayBase()
        return d in self._holidays

    def holiday_name(self, d: date) -> str | None:
        """The public holiday's name (an observed day keeps its own "(observed)" name: a
        day off work, not the holiday's shopping pattern)."""
        if not self.is_holiday(d) or self._holidays is None:
            return None
        return str(self._holidays.get(d)).split(";")[0].strip()

    def event(self, d: date) -> str | None:
        """The day's calendar event: a retail event, else the public holiday's name."""
        return retail_event(d) or self.holiday_name(d)

    def features(self, d: date) -> dict[str, float]:
        """Feature dict of ``d`` (do not mutate: it is shared through the cache)."""
        cached = self._cache.get(d)
        if cached is not None:
            return cached
        f: dict[str, float] = {f"dow_{d.weekday()}": 1.0}
        doy = d.timetuple().tm_yday
        for k in range(1, self.fourier_terms + 1):
            angle = 2.0 * math.pi * k * doy / 365.25
            f[f"sin_{k}"] = math.sin(angle)
            f[f"cos_{k}"] = math.cos(angle)
        f["holiday"] = 1.0 if self.is_holiday(d) else 0.0
        bf = black_friday(d.year)
        f["black_friday"] = 1.0 if d == bf else 0.0
        f["cyber_monday"] = 1.0 if d == bf + timedelta(days=3) else 0.0
        f["bf_weekend"] = 1.0 if bf < d < bf + timedelta(days=3) else 0.0
        christmas = date(d.year, 12, 25)
        f["christmas_eve"] = 1.0 if d == christmas - timedelta(days=1) else 0.0
        f["week_before_christmas"] = 1.0 if christmas - timedelta(days=8) <= d < christmas else 0.0
        f["after_christmas"] = 1.0 if christmas < d <= date(d.year, 12, 31) else 0.0
        f["to_christmas"] = _ramp((christmas - d).days - 1)  # ramps up to Christmas Eve
        f["to_black_friday"] = _ramp((bf - d).days)
        if len(self._cache) > 4096:  # a bounded cache: the flow only looks ~a month ahead
            self._cache.clear()
        self._cache[d] = f
        return f
