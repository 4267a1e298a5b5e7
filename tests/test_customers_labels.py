"""Delayed churn labels: correct, never used before their horizon, replayable, bounded."""

from __future__ import annotations

import random

import pytest

from processors.churn_labels import LabelQueue, PrequentialMetrics

H = 90


def simulate(release: str, seed: int = 5):
    """Random purchases and scores of a few customers, in event-time order."""
    rng = random.Random(seed)
    q = LabelQueue(H, 10, lateness_ms=0, release=release)
    buys: dict[str, list[int]] = {}
    released = []
    for t in range(0, 1000):
        for c in ("A", "B", "C", "D"):
            if rng.random() < {"A": 0.05, "B": 0.01, "C": 0.002, "D": 0.0}[c]:
                buys.setdefault(c, []).append(t)
                for lab in q.purchase(c, t):
                    released.append((lab, q.watermark, t))
            if rng.random() < 0.2:
                q.offer(c, t, (float(t),), 0.5)
        for lab in q.advance(t):
            released.append((lab, q.watermark, t))
    return released, buys, q


@pytest.mark.parametrize("release", ["horizon", "purchase"])
def test_labels_follow_the_definition_and_never_come_early(release: str):
    released, buys, q = simulate(release)
    assert released and any(lab.churned for lab, _, _ in released)
    assert any(not lab.churned for lab, _, _ in released)
    for lab, watermark, now in released:
        bought = [b for b in buys.get(lab.customer, []) if lab.scored_at < b <= lab.scored_at + H]
        assert lab.churned == (not bought)
        if lab.churned or release == "horizon":
            # released only once the event-time watermark reached the end of the horizon
            assert watermark >= lab.scored_at + H and lab.labelled_at >= lab.scored_at + H
        else:  # not churned, released at the purchase that proved it, never before
            assert lab.labelled_at == now == bought[0]
    # every snapshot whose horizon has passed is labelled exactly once
    keys = [(lab.customer, lab.scored_at) for lab, _, _ in released]
    assert len(keys) == len(set(keys))
    assert all(s[0] + H > q.watermark for snaps in q.pending.values() for s in snaps)
    assert len(q) == sum(len(snaps) for snaps in q.pending.values())


def test_replay_gives_the_same_labels_in_the_same_order():
    first, _, _ = simulate("horizon")
    second, _, _ = simulate("horizon")
    assert [x[0] for x in first] == [x[0] for x in second]


def test_pending_snapshots_per_customer_are_bounded():
    q = LabelQueue(H, 10)
    for t in range(0, 500):
        q.offer("busy", t, (1.0,), 0.1)
        q.advance(t)
    assert len(q.pending["busy"]) <= H // 10 + 1


def test_watermark_lateness_holds_labels_back():
    q = LabelQueue(H, 10, lateness_ms=5)
    q.offer("A", 0, (1.0,), 0.9)
    assert q.advance(H + 4) == []
    assert [lab.churned for lab in q.advance(H + 5)] == [True]


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        LabelQueue(0, 10)
    with pytest.raises(ValueError):
        LabelQueue(10, 10, release="someday")


def test_prequential_auc_matches_the_rank_statistic():
    rng = random.Random(1)
    m = PrequentialMetrics(fine_bins=1000)
    pairs = []
    for _ in range(3000):
        y = rng.random() < 0.3
        p = min(0.999, max(0.0, rng.gauss(0.6 if y else 0.4, 0.15)))
        m.update(p, y)
        pairs.append((p, y))
    pos = [p for p, y in pairs if y]
    neg = [p for p, y in pairs if not y]
    exact = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))
    assert m.auc() == pytest.approx(exact, abs=0.002)
    rel = m.reliability()
    assert sum(n for _, _, n in rel) == 3000 and 0 <= m.ece() <= 1
    fields = m.fields()
    assert fields["labels"] == 3000 and isinstance(fields["reliability"], str)
