"""The demand forecaster: intermittent demand, seasonality, cold start, quantiles, policy."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from models.demand import DemandForecaster, ResidualQuantiles
from processors.inventory_policy import LeadTimes, reorder_points, z_value

D0 = 19_723  # 2024-01-01, a Monday


def weekly(day: int) -> float:
    return 2.0 if (day - D0) % 7 in (5, 6) else 1.0  # weekends sell double


def simulate(fc: DemandForecaster, rates: np.ndarray, days: int, rng, start: int = D0):
    for d in range(start, start + days):
        fc.learn_day(d, rng.poisson(rates * weekly(d)).astype(float))


def test_learns_levels_and_weekly_seasonality_and_never_goes_negative():
    rng = np.random.default_rng(1)
    fc = DemandForecaster(horizon=14, group_alpha=0.0, series_features=False)
    rates = np.array([0.05, 0.3, 1.0, 5.0])
    for _ in rates:
        fc.add_series("D1", D0 - 400, None)
    simulate(fc, rates, 300, rng)
    mean = fc.forecast(D0 + 299)
    assert (mean >= 0).all()
    truth = rates[:, None] * np.array([weekly(D0 + 300 + h) for h in range(14)])[None, :]
    rel = np.abs(mean.sum(axis=1) - truth.sum(axis=1)) / truth.sum(axis=1)
    assert rel[1:].max() < 0.3  # slow movers included; the 0.05 one is too noisy to pin
    weekend = [h for h in range(14) if weekly(D0 + 300 + h) == 2.0]
    weekday = [h for h in range(14) if weekly(D0 + 300 + h) == 1.0]
    ratio = mean[3, weekend].mean() / mean[3, weekday].mean()
    assert 1.5 < ratio < 2.6


def test_intermittent_series_keep_a_positive_mean_rate():
    rng = np.random.default_rng(2)
    fc = DemandForecaster(horizon=7, group_alpha=0.0)
    fc.add_series("D1", D0 - 400, None)
    simulate(fc, np.array([0.1]), 200, rng)
    mean = fc.forecast(D0 + 199)
    assert 0.02 < mean.mean() < 0.4  # mostly zero days, but not a zero forecast


def test_cold_start_prior_hands_over_to_own_history():
    fc = DemandForecaster(horizon=7, prior_days=7.0, group_alpha=0.0)
    i = fc.add_series("D1", D0, prior=4.0)
    assert fc.forecast(D0 - 1)[i].mean() == pytest.approx(4.0, rel=0.5)
    for d in range(D0, D0 + 60):
        fc.learn_day(d, np.array([1.0]))
    assert fc.forecast(D0 + 59)[i].mean() == pytest.approx(1.0, rel=0.3)


def test_middle_out_level_scales_series_to_their_group_rate():
    fc = DemandForecaster(horizon=7, group_alpha=0.5)
    for _ in range(3):
        fc.add_series("D1", D0 - 400, None, group=0)
    for d in range(D0, D0 + 40):
        fc.learn_day(d, np.array([1.0, 2.0, 3.0]))
    for d in range(D0 + 40, D0 + 50):  # demand doubles
        fc.learn_day(d, np.array([2.0, 4.0, 6.0]))
    level = fc.effective_level()
    assert level.sum() == pytest.approx(fc.group_level[0])
    assert level[2] / level[0] == pytest.approx(3.0, rel=0.2)  # shares from own levels


def test_pickle_keeps_forecasts():
    rng = np.random.default_rng(3)
    fc = DemandForecaster(horizon=7)
    fc.add_series("D1", D0 - 400, None)
    fc.add_series("D2", D0 + 5, 0.5, group=1)
    simulate(fc, np.array([1.0, 0.5]), 20, rng)
    clone = pickle.loads(pickle.dumps(fc))
    np.testing.assert_allclose(clone.forecast(D0 + 19), fc.forecast(D0 + 19))


def test_residual_quantiles_are_calibrated_on_poisson_errors():
    rng = np.random.default_rng(4)
    q = ResidualQuantiles(window=5000)
    mu = rng.uniform(0.5, 20.0, size=4000)
    q.add("sku", 1, mu, rng.poisson(mu).astype(float))
    mu2 = rng.uniform(0.5, 20.0, size=(3000, 1))
    p10, p50, p90 = q.quantiles("sku", np.array([1]), mu2)
    y = rng.poisson(mu2)
    assert (p10 <= p50).all() and (p50 <= p90).all() and (p10 >= 0).all()
    assert 0.72 < ((y >= p10) & (y <= p90)).mean() < 0.92


def test_reorder_point_formula_and_lead_times():
    mean = np.full((2, 28), 3.0)
    sd = 1.0
    p = reorder_points(mean, mean - 1.2816 * sd, mean + 1.2816 * sd, np.array([2.5, 40.0]), 0.9)
    assert p.mean_lead[0] == pytest.approx(7.5)
    assert p.safety[0] == pytest.approx(z_value(0.9) * np.sqrt(2.25), rel=1e-3)
    assert p.lead_days[1] == 28.0  # capped at the horizon
    with pytest.raises(ValueError):
        z_value(1.0)
    lt = LeadTimes(default_days=9.0)
    lt.created("P1", ("K", "S"), 0)
    lt.received("P1", 4 * 86_400_000)
    lt.received("P1", 9 * 86_400_000)  # a second partial receipt does not count
    lt.created("P2", ("K", "S"), 10 * 86_400_000)
    lt.received("P2", 16 * 86_400_000)
    assert lt.days(("K", "S")) == pytest.approx(4.0 + 0.3 * 2.0)
    lt.created("P3", ("K", "S"), 0)
    lt.forget_before(1)
    assert lt.days(("X", "S")) == 9.0


def test_an_event_seen_once_is_learned_from_the_whole_chain_and_spares_the_levels():
    """Black Friday 2024 (day D0 + 333) sells 4x in every series; one sighting is enough."""
    rng = np.random.default_rng(5)
    bf = D0 + 333
    rates = np.full(40, 2.0)
    fcs = {
        "events": DemandForecaster(horizon=14, series_features=False),
        "no_prior": DemandForecaster(horizon=14, series_features=False, event_priors=False),
        "glm_flags": DemandForecaster(horizon=14, series_features=False, event_effects=False),
    }
    for fc in fcs.values():
        for _ in rates:
            fc.add_series("D1", D0 - 400, None)
    for d in range(bf - 60, bf + 1):
        y = rng.poisson(rates * (4.0 if d == bf else 1.0)).astype(float)
        for fc in fcs.values():
            fc.learn_day(d, y)
    ev = fcs["events"]
    assert ev.event(bf) == "black_friday" and ev.events is not None
    assert np.exp(ev.events.effect("black_friday", "D1")) == pytest.approx(3.5, rel=0.15)
    assert ev.level.mean() == pytest.approx(2.0, rel=0.1)  # the spike did not lift the level
    # next year's Black Friday against the Friday before, forecast 8 and 1 days ahead
    nxt = D0 + 333 + 364
    ratios = {}
    for name, fc in fcs.items():
        f = fc.forecast(nxt - 8).sum(axis=0)
        ratios[name] = f[7] / f[0]
    assert ratios["events"] > 2.8 and ratios["no_prior"] > 2.5
    assert ratios["glm_flags"] < 2.0  # one SGD step a year barely moves a weight


def test_online_calibration_widens_intervals_when_errors_outgrow_the_pooled_residuals():
    rng = np.random.default_rng(6)
    cover = {}
    for gamma in (0.0, 0.05):
        q = ResidualQuantiles(window=50_000, gamma=gamma)
        hits = []
        for t in range(400):
            mu = np.full(50, 100.0)
            spread = 10.0 if t < 200 else 30.0  # errors triple after 200 days
            if t >= 300:
                p10, _, p90 = q.quantiles("total", np.array([1]), mu[:, None])
                y = mu + rng.normal(0.0, spread, 50)
                hits.append(((y >= p10[:, 0]) & (y <= p90[:, 0])).mean())
            q.add("total", 1, mu, mu + rng.normal(0.0, spread, 50))
        cover[gamma] = float(np.mean(hits))
    assert cover[0.0] < 0.65, cover  # the pooled residuals still remember the quiet days
    assert 0.72 < cover[0.05] < 0.88
