"""Bottom-up reconciliation: every level sums its children, also after SKUs are added."""

from __future__ import annotations

import numpy as np
import pytest

from processors.reconcile import LEVELS, Hierarchy


def tree() -> Hierarchy:
    h = Hierarchy()
    for sku, cat, dept in (("K1", "C1", "D1"), ("K2", "C1", "D1"), ("K3", "C2", "D2")):
        for store, region in (("S1", "R1"), ("S2", "R1"), ("S3", "R2")):
            h.add(sku, store, cat, dept, region)
    return h


def test_every_level_sums_the_bottom():
    h = tree()
    rng = np.random.default_rng(0)
    bottom = rng.gamma(1.0, 2.0, size=(len(h), 28))
    agg = h.aggregate(bottom)
    assert set(agg) == set(LEVELS)
    assert agg["total"].shape == (1, 28)
    for level in LEVELS:
        assert agg[level].sum(axis=0) == pytest.approx(bottom.sum(axis=0))
    # children -> parent at intermediate levels too
    cat_store = dict(zip(h.nodes["category_store"], agg["category_store"], strict=True))
    cats = dict(zip(h.nodes["category"], agg["category"], strict=True))
    assert cat_store["C1:S1"] + cat_store["C1:S2"] + cat_store["C1:S3"] == pytest.approx(cats["C1"])
    regions = dict(zip(h.nodes["region"], agg["region"], strict=True))
    stores = dict(zip(h.nodes["store"], agg["store"], strict=True))
    assert stores["S1"] + stores["S2"] == pytest.approx(regions["R1"])
    assert h.is_coherent(agg)


def test_coherence_holds_after_adding_a_sku_and_a_store():
    h = tree()
    before = {lv: list(nodes) for lv, nodes in h.nodes.items()}
    h.add("K4", "S1", "C3", "D2", "R1")  # new SKU in a new category
    h.add("K1", "S4", "C1", "D1", "R3")  # existing SKU in a new store and region
    for level in LEVELS:  # nodes are append-only: existing indices keep their meaning
        assert h.nodes[level][: len(before[level])] == before[level]
    bottom = np.arange(len(h), dtype=float)
    agg = h.aggregate(bottom)
    assert h.is_coherent(agg)
    assert agg["total"][0] == bottom.sum()
    assert agg["category"][h.nodes["category"].index("C3")] == bottom[h.index[("K4", "S1")]]


def test_a_sku_moving_category_is_repointed():
    h = tree()
    i = h.add("K1", "S1", "C2", "D2", "R1")
    assert h.add("K1", "S1", "C2", "D2", "R1") == i  # unchanged attributes: a no-op
    bottom = np.zeros(len(h))
    bottom[i] = 5.0
    agg = h.aggregate(bottom)
    assert agg["category"][h.nodes["category"].index("C2")] == 5.0
    assert agg["category"][h.nodes["category"].index("C1")] == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        tree().aggregate(np.zeros(3))
    assert not tree().is_coherent(
        {lv: (a + (lv == "total")) for lv, a in tree().aggregate(np.ones(9)).items()}
    )
