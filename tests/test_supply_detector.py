"""Disruption detector: quiet on a clean series, one alert on a shifted one, opens and closes."""

from __future__ import annotations

import pickle
import random

from models.disruption import DisruptionDetector
from models.lead_time import LeadTimeModel

DAY = 86_400_000


def feed(d: DisruptionDetector, day0: float, days: float, *, disrupted: bool, seed: int) -> list:
    """Four POs a day: dispatch (short?), maybe a delay notice, receipt (late?)."""
    rng = random.Random(seed)
    alerts = []
    for i in range(int(days * 4)):
        t = int((day0 + i / 4) * DAY)
        sku, store = f"K{i % 5}", f"S{i % 3}"
        short = rng.random() < (0.5 if disrupted else 0.07)
        alerts += d.observe("SUP1", t, "dispatch", fill=0.5 if short else 1.0, sku=sku)
        if rng.random() < (0.9 if disrupted else 0.25):
            delay = rng.uniform(8, 15) if disrupted else rng.uniform(0.5, 3)
            alerts += d.observe(
                "SUP1", t + 1, "notice", delay_days=delay, promised_days=7.0, sku=sku
            )
        late = rng.gauss(12 if disrupted else 0.5, 2)
        alerts += d.observe("SUP1", t + 2, "receipt", lateness_days=late, sku=sku, store=store)
    return alerts


def test_clean_series_raises_no_alert():
    d = DisruptionDetector()
    assert feed(d, 0, 120, disrupted=False, seed=1) == []


def test_shifted_series_raises_one_alert_that_updates_and_closes():
    d = DisruptionDetector()
    assert feed(d, 0, 40, disrupted=False, seed=2) == []
    during = feed(d, 40, 10, disrupted=True, seed=3)
    after = feed(d, 50, 30, disrupted=False, seed=4)
    alerts = during + after
    assert len({a.alert_id for a in alerts}) == 1, "one episode, one alert id"
    statuses = [a.status for a in alerts]
    assert statuses[0] == "open" and statuses[-1] == "closed"
    assert statuses.count("open") == 1 and statuses.count("closed") == 1
    opened = alerts[0]
    assert opened.supplier_id == "SUP1" and opened.t < 42 * DAY  # within two days
    assert opened.severity in ("low", "medium", "high") and opened.evidence["cusum"] >= 9
    assert alerts[-1].t > 50 * DAY  # closes only after the supplier recovered
    assert "S0" in alerts[-1].stores and alerts[-1].skus


def burst(d: DisruptionDetector, t0: int, n: int, delay: float) -> list:
    """``n`` delay notices within an hour from SUP1: the warnings at an episode's onset."""
    out: list = []
    for i in range(n):
        t = t0 + i * 300_000
        out += d.observe("SUP1", t, "notice", delay_days=delay, promised_days=9.0, sku=f"K{i}")
    return out


def test_a_burst_of_long_delay_notices_opens_an_alert_at_once():
    d = DisruptionDetector()
    assert feed(d, 0, 30, disrupted=False, seed=6) == []
    alerts = burst(d, 30 * DAY, 12, delay=6.0)  # shorter than the promised lead time
    assert [a.status for a in alerts][:1] == ["open"]
    assert alerts[0].t < 30 * DAY + 3_600_000 and alerts[0].evidence["burst_share"] > 0
    # The same notices spread over days, or a few at once, are no burst.
    for n, spread in ((12, DAY), (3, 300_000)):
        d = DisruptionDetector()
        feed(d, 0, 30, disrupted=False, seed=6)
        quiet = []
        for i in range(n):
            t = 30 * DAY + i * spread
            quiet += d.observe("SUP1", t, "notice", delay_days=6.0, promised_days=9.0)
        assert quiet == []
    d = DisruptionDetector(burst_count=0)  # switched off
    feed(d, 0, 30, disrupted=False, seed=6)
    assert burst(d, 30 * DAY, 12, delay=6.0) == []


def test_state_survives_a_pickle_and_stays_small():
    d = DisruptionDetector()
    feed(d, 0, 30, disrupted=False, seed=5)
    clone = pickle.loads(pickle.dumps(d))
    assert clone.watches["SUP1"].cusum == d.watches["SUP1"].cusum
    assert len(pickle.dumps(d.watches["SUP1"])) < 4_000  # per supplier; the forest is shared


def test_lead_time_model_falls_back_and_covers():
    m = LeadTimeModel(warmup=10)
    rng = random.Random(0)
    hits = n = 0
    for i in range(600):
        x = {"supplier_id": f"SUP{i % 3}", "sku": f"K{i % 7}", "promised_days": 7.0}
        y = rng.gammavariate(5, (6 + i % 3) / 5)
        p = m.predict_one(x)
        if i > 100:
            n += 1
            hits += p.low <= y <= p.high
        m.learn_one(x, y)
    assert 0.8 <= hits / n <= 0.97  # the band tracks its 90% target
    assert m.predict_one({"supplier_id": "SUP1", "sku": "NEW"}).level == "supplier"
    assert m.predict_one({"supplier_id": "NEW"}).level == "global"
