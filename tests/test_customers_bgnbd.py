"""The online BG/NBD model recovers known parameters from data drawn from them."""

from __future__ import annotations

import numpy as np
import pytest

from models.bgnbd import DAY_MS, BGNBDModel

TRUE = {"r": 0.8, "alpha": 30.0, "a": 1.5, "b": 10.0}


def draw(n: int, seed: int, horizon: np.ndarray | None = None):
    """Customers from the BG/NBD process: (x, t_x, T) and the purchases after T."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUE["r"], 1.0 / TRUE["alpha"], n)
    p = rng.beta(TRUE["a"], TRUE["b"], n)
    T = rng.uniform(120, 480, n) if horizon is None else horizon
    x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        t, alive = 0.0, True
        while alive:
            t += rng.exponential(1.0 / lam[i])
            if t > T[i] + 90:
                break
            if t <= T[i]:
                x[i] += 1
                t_x[i] = t
            else:
                future[i] += 1
            alive = rng.random() >= p[i]
    return x, t_x, T, future


def test_online_refit_on_the_reservoir_recovers_known_parameters():
    x, t_x, T, _ = draw(6000, seed=7)
    now = int(500 * DAY_MS)
    model = BGNBDModel(reservoir=5000, min_customers=100, refit_days=7)
    for i in range(len(x)):  # first purchase at now - T, last at first + t_x
        first = now - int(T[i] * DAY_MS)
        model.observe(f"C{i}", int(x[i]), first, first + int(t_x[i] * DAY_MS))
    assert len(model.sample) == 5000  # bounded
    assert model.refit(now)
    got = model.params()
    assert got["r"] == pytest.approx(TRUE["r"], rel=0.15)
    assert got["alpha"] == pytest.approx(TRUE["alpha"], rel=0.2)
    # a and b are weakly identified one by one; the mean dropout a / (a + b) is not
    mean_drop = got["a"] / (got["a"] + got["b"])
    assert mean_drop == pytest.approx(TRUE["a"] / (TRUE["a"] + TRUE["b"]), rel=0.25)


def test_expected_purchases_match_what_happens_next():
    x, t_x, T, future = draw(4000, seed=11)
    model = BGNBDModel(**TRUE)
    expected = sum(model.expected_purchases(90.0, x[i], t_x[i], T[i]) for i in range(len(x)))
    assert expected == pytest.approx(future.sum(), rel=0.1)
    quiet = np.array([model.p_no_purchase(90.0, x[i], t_x[i], T[i]) for i in range(len(x))])
    assert quiet.mean() == pytest.approx((future == 0).mean(), abs=0.03)


def test_reservoir_is_a_deterministic_bottom_k_sample():
    a, b = BGNBDModel(reservoir=50), BGNBDModel(reservoir=50)
    ids = [f"C{i}" for i in range(500)]
    for c in ids:
        a.observe(c, 1, 0, DAY_MS)
    for c in reversed(ids):
        b.observe(c, 1, 0, DAY_MS)
    assert set(a.sample) == set(b.sample) and len(a.sample) == 50


def test_refits_follow_event_time_and_tolerate_too_little_data():
    model = BGNBDModel(min_customers=10, refit_days=7)
    model.observe("C1", 2, 0, 3 * DAY_MS)
    assert model.maybe_refit(0) is False  # arms the clock
    assert model.maybe_refit(6 * DAY_MS) is False
    assert model.maybe_refit(7 * DAY_MS) is False  # due, but too few customers
    assert model.params() == BGNBDModel(min_customers=10).params()
    assert 0.0 < model.p_alive(3, 10.0, 100.0) < model.p_alive(3, 95.0, 100.0) <= 1.0
