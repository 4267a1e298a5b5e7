"""The demand hierarchy and bottom-up reconciliation (coherent by construction).

Eight levels, from the bottom series (SKU x store) to the total::

    sku_store -> sku -> category -> department -> total
    sku_store -> category_store -> category
    sku_store -> store -> region -> total

Every level is a sum of bottom series, so a forecast for each bottom series summed through
fixed index arrays (``np.add.at``) is coherent at every level: each parent equals the sum of
its children exactly (to float rounding). Nodes are appended: a new SKU or store appends
a bottom series and, if needed, new parent nodes, and the next aggregation includes it, so
coherence holds as SKUs are added. A SKU that moves category is re-pointed. Retiring dead
series (:meth:`Hierarchy.retain`) drops them and the parents left without children, keeping
the order of everything else, so arrays indexed by node stay prefix-aligned after
:func:`take_nodes`.

Why bottom-up (docs/demand.md): the bottom model is a global model whose parameters are
learned from all series, so aggregate-level base forecasts would use the same signal; other
methods (OLS/MinT) were not measured to win here and cost a solve over the whole tree.

>>> h = Hierarchy()
>>> h.add("K1", "S1", "C1", "D1", "R1"), h.add("K2", "S1", "C1", "D1", "R1")
(0, 1)
>>> agg = h.aggregate(np.array([1.0, 2.0]))
>>> agg["category"].tolist(), agg["total"].tolist()
([3.0], [3.0])
>>> h.add("K3", "S2", "C2", "D1", "R2")
2
>>> h.aggregate(np.array([1.0, 2.0, 4.0]))["region"].tolist()
[3.0, 4.0]
>>> kept = h.retain(np.array([True, False, True]))  # K2:S1 retired
>>> h.nodes["sku"], h.aggregate(np.array([1.0, 4.0]))["total"].tolist()
(['K1', 'K3'], [5.0])
>>> take_nodes(np.array([7.0, 8.0]), kept["sku"]).tolist()  # K3 was not there yet: cut
[7.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LEVELS", "ColdStartPriors", "Hierarchy", "SeriesAttributes", "take_nodes"]

LEVELS: tuple[str, ...] = (
    "sku_store",
    "sku",
    "category_store",
    "category",
    "department",
    "store",
    "region",
    "total",
)


@dataclass(frozen=True, slots=True)
class SeriesAttributes:
    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    sku: str
    store: str
    category: str
    department: str
    region: str

    def node_ids(self) -> dict[str, str]:
        """The id of this series' node at every level."""
        return {
            "sku_store": f"{self.sku}:{self.store}",
            "sku": self.sku,
            "category_store": f"{self.category}:{self.store}",
            "category": self.category,
            "department": self.department,
            "store": self.store,
            "region": self.region,
            "total": "all",
        }


class Hierarchy:
    """Append-only tree of series; ``parent[level][i]`` is bottom series i's node at level."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(self) -> None:
        self.series: list[SeriesAttributes] = []
        self.index: dict[tuple[str, str], int] = {}
        self.nodes: dict[str, list[str]] = {level: [] for level in LEVELS}
        self._node_index: dict[str, dict[str, int]] = {level: {} for level in LEVELS}
        self._parent: dict[str, list[int]] = {level: [] for level in LEVELS}
        self._arrays: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.series)

    def _node(self, level: str, node_id: str) -> int:
        idx = self._node_index[level].get(node_id)
        if idx is None:
            idx = self._node_index[level][node_id] = len(self.nodes[level])
            self.nodes[level].append(node_id)
        return idx

    def add(self, sku: str, store: str, category: str, department: str, region: str) -> int:
        """Add (or re-point) a bottom series; returns its index."""
        attrs = SeriesAttributes(sku, store, category, department, region)
        i = self.index.get((sku, store))
        if i is not None and self.series[i] == attrs:
            return i
        ids = attrs.node_ids()
        if i is None:
            i = self.index[(sku, store)] = len(self.series)
            self.series.append(attrs)
            for level in LEVELS:
                self._parent[level].append(self._node(level, ids[level]))
        else:  # attributes changed (a SKU moved category): re-point its parents
            self.series[i] = attrs
            for level in LEVELS:
                self._parent[level][i] = self._node(level, ids[level])
        self._arrays = None
        return i

    def retain(self, keep: np.ndarray) -> dict[str, np.ndarray]:
        """Keep the bottom series where ``keep`` is True (order kept), drop parents left
        without a child. Returns, per level, the old index of every remaining node
        (increasing), for :func:`take_nodes` on arrays indexed by the old nodes."""
        rows = np.nonzero(keep)[0]
        kept: dict[str, np.ndarray] = {}
        for level in LEVELS:
            parent = self.parents(level)[rows]
            used = np.unique(parent)  # sorted: the nodes keep their relative order
            new_of_old = np.full(len(self.nodes[level]), -1, dtype=np.int64)
            new_of_old[used] = np.arange(len(used))
            self.nodes[level] = [self.nodes[level][j] for j in used]
            self._node_index[level] = {n: j for j, n in enumerate(self.nodes[level])}
            self._parent[level] = new_of_old[parent].tolist()
            kept[level] = used
        self.series = [self.series[i] for i in rows]
        self.index = {(s.sku, s.store): j for j, s in enumerate(self.series)}
        self._arrays = None
        return kept

    def parent_of(self, level: str, i: int) -> int:
        """Node index of bottom series ``i`` at ``level``."""
        return self._parent[level][i]

    def parents(self, level: str) -> np.ndarray:
        """Index array: bottom series -> node of ``level``."""
        if self._arrays is None:
            self._arrays = {lv: np.asarray(p, dtype=np.int64) for lv, p in self._parent.items()}
        return self._arrays[level]

    def aggregate(self, bottom: np.ndarray) -> dict[str, np.ndarray]:
        """Sum bottom values (shape (N,) or (N, H)) to every level: coherent by construction."""
        if bottom.shape[0] != len(self.series):
            raise ValueError(f"expected {len(self.series)} bottom rows, got {bottom.shape[0]}")
        out: dict[str, np.ndarray] = {}
        for level in LEVELS:
            if level == "sku_store":
                out[level] = bottom.copy()
                continue
            sums = np.zeros((len(self.nodes[level]), *bottom.shape[1:]), dtype=np.float64)
            np.add.at(sums, self.parents(level), bottom)
            out[level] = sums
        return out

    def is_coherent(self, values: dict[str, np.ndarray], tol: float = 1e-6) -> bool:
        """Every level equals the sum of the bottom series (what consumers can rely on)."""
        expected = self.aggregate(values["sku_store"])
        return all(np.allclose(values[lv], expected[lv], atol=tol) for lv in LEVELS)


def take_nodes(values: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (indexed by old nodes, possibly fewer rows than nodes: nodes added
    after it was made) for the remaining nodes ``kept`` (from :meth:`Hierarchy.retain`).
    The result stays a prefix of the new node list, which is what scoring relies on."""
    return values[kept[kept < len(values)]]


class ColdStartPriors:
    """Cold-start levels for new series from the hierarchy and attributes (docs/demand.md).

    Refreshed once per closed day from the *established* series (28+ days of history, 28+
    days on sale): mean level per SKU, per category x store and per category, each store's
    volume relative to the mean store, and a price-tier ratio (a SKU's price against the
    median launch price of its category: budget < 0.8x, premium > 1.4x). A new series gets,
    in order of preference:

    1. the SKU's mean level in other stores x this store's relative volume (new store for
       a known SKU: relative volume from floor area when the store has no history);
    2. the category x store mean level x the tier ratio (new SKU in a known store);
    3. the category mean x store volume x tier ratio; 4. the global mean x store volume.

    >>> h = Hierarchy()
    >>> for k in ("K1", "K2"):
    ...     _ = h.add(k, "S1", "C1", "D1", "R1")
    >>> p = ColdStartPriors()
    >>> p.prior("K3", "S1", "C1", 5.0, None) is None  # no history yet
    True
    >>> p.refresh(h, np.array([1.0, 3.0]), np.full(2, 60.0), np.zeros(2, dtype=int), 100,
    ...           {"S1": 1000.0}, {"K1": ("C1", 5.0), "K2": ("C1", 5.0)})
    >>> p.prior("K3", "S1", "C1", 5.0, None), p.prior("K1", "S2", "C1", 5.0, 500.0)
    (2.0, 0.5)
    """

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    ESTABLISHED_DAYS = 28.0

    def __init__(self) -> None:
        self.store_rel: dict[str, float] = {}
        self.mean_size = 0.0
        self.sku_level: dict[str, float] = {}
        self.cat_store: dict[str, float] = {}
        self.cat_level: dict[str, float] = {}
        self.global_level: float | None = None
        self.cat_price: dict[str, float] = {}
        self.tier_ratio: dict[str, float] = {}

    def tier(self, category: str, price: float | None) -> str:
        median = self.cat_price.get(category)
        if not median or not price:
            return "standard"
        ratio = price / median
        return "budget" if ratio < 0.8 else "premium" if ratio > 1.4 else "standard"

    def prior(
        self, sku: str, store: str, category: str, price: float | None, size: float | None
    ) -> float | None:
        if self.global_level is None:
            return None
        store_rel = self.store_rel.get(store)
        if store_rel is None:  # a new store: scale by floor area against the known stores
            store_rel = size / self.mean_size if size and self.mean_size else 1.0
        if sku in self.sku_level:
            return self.sku_level[sku] * store_rel
        tier_ratio = self.tier_ratio.get(self.tier(category, price), 1.0)
        cs = self.cat_store.get(f"{category}:{store}")
        if cs is not None:
            return cs * tier_ratio
        return self.cat_level.get(category, self.global_level) * store_rel * tier_ratio

    def refresh(
        self,
        tree: Hierarchy,
        level: np.ndarray,
        days: np.ndarray,
        born: np.ndarray,
        today: int,
        sizes: dict[str, float],
        prices: dict[str, tuple[str, float]],
    ) -> None:
        """Recompute the group means from the established series (O(N), once a day)."""
        est = (days >= self.ESTABLISHED_DAYS) & (today - born >= self.ESTABLISHED_DAYS)
        if not est.any():
            return

        def means(lv_name: str) -> dict[str, float]:
            idx = tree.parents(lv_name)[est]
            n_nodes = len(tree.nodes[lv_name])
            sums = np.bincount(idx, weights=level[est], minlength=n_nodes)
            counts = np.bincount(idx, minlength=n_nodes)
            nodes = tree.nodes[lv_name]
            return {nodes[j]: float(sums[j] / counts[j]) for j in np.nonzero(counts)[0]}

        store_mean = means("store")
        overall = float(np.mean(list(store_mean.values())))
        self.store_rel = {k: v / overall for k, v in store_mean.items()}
        known = [sizes[k] for k in store_mean if k in sizes]
        self.mean_size = float(np.mean(known)) if known else 0.0
        self.sku_level = means("sku")
        self.cat_store = means("category_store")
        self.cat_level = means("category")
        self.global_level = float(level[est].mean())
        by_cat: dict[str, list[float]] = {}
        for category, price in prices.values():
            by_cat.setdefault(category, []).append(price)
        self.cat_price = {c: float(np.median(p)) for c, p in by_cat.items()}
        ratios: dict[str, list[float]] = {}
        cs_idx, cs_nodes = tree.parents("category_store"), tree.nodes["category_store"]
        for i in np.nonzero(est)[0]:
            base = self.cat_store.get(cs_nodes[cs_idx[i]])
            category, price = prices.get(tree.series[i].sku, ("", 0.0))
            if base:
                ratios.setdefault(self.tier(category, price), []).append(level[i] / base)
        self.tier_ratio = {t: float(np.mean(r)) for t, r in ratios.items()}
