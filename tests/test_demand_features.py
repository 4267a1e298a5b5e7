"""Calendar features: weekday, yearly Fourier terms, holidays and retail events."""

from __future__ import annotations

from datetime import date

import pytest

from processors.calendar_features import (
    CalendarFeatures,
    black_friday,
    epoch_day,
    from_epoch_day,
)

CAL = CalendarFeatures("US")


@pytest.mark.parametrize(
    ("year", "expected"),
    [(2023, date(2023, 11, 24)), (2024, date(2024, 11, 29)), (2025, date(2025, 11, 28))],
)
def test_black_friday_is_the_day_after_the_fourth_thursday(year, expected):
    assert black_friday(year) == expected


def test_exactly_one_weekday_is_set():
    for offset in range(14):
        f = CAL.features(date(2024, 3, 1 + offset))
        assert sum(v for k, v in f.items() if k.startswith("dow_")) == 1.0


def test_retail_events():
    assert CAL.features(date(2024, 12, 2))["cyber_monday"] == 1.0
    assert CAL.features(date(2024, 12, 24))["christmas_eve"] == 1.0
    assert CAL.features(date(2024, 12, 20))["week_before_christmas"] == 1.0
    assert CAL.features(date(2024, 12, 10))["week_before_christmas"] == 0.0
    assert CAL.features(date(2024, 7, 4))["holiday"] == 1.0  # from the holidays package
    assert CAL.features(date(2024, 7, 5))["holiday"] == 0.0


def test_days_to_event_ramps_up_to_the_event():
    ramp = [CAL.features(date(2024, 12, d))["to_christmas"] for d in range(1, 25)]
    assert ramp == sorted(ramp) and ramp[-1] == 1.0
    assert CAL.features(date(2024, 12, 26))["to_christmas"] == 0.0
    assert CAL.features(date(2024, 6, 1))["to_black_friday"] == 0.0


def test_fourier_terms_are_periodic_and_bounded():
    a, b = CAL.features(date(2024, 2, 10)), CAL.features(date(2025, 2, 10))
    assert a["sin_1"] == pytest.approx(b["sin_1"], abs=0.02)
    assert all(-1.0 <= a[f"{t}_{k}"] <= 1.0 for t in ("sin", "cos") for k in (1, 2, 3))


def test_unknown_country_has_no_public_holidays_but_keeps_retail_events():
    cal = CalendarFeatures("XX")
    f = cal.features(date(2024, 11, 29))
    assert f["holiday"] == 0.0 and f["black_friday"] == 1.0


def test_epoch_days_round_trip_and_pickle_is_small():
    import pickle

    assert from_epoch_day(epoch_day(date(2024, 2, 29))) == date(2024, 2, 29)
    CAL.features(date(2024, 1, 1))
    assert len(pickle.dumps(CAL)) < 200  # holiday tables and caches rebuild on demand
    clone = pickle.loads(pickle.dumps(CAL))
    assert clone.features(date(2024, 7, 4)) == CAL.features(date(2024, 7, 4))
