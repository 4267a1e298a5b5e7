"""The static world: regions and stores, the department -> category -> SKU tree, suppliers.

SKUs are kept column-wise (numpy arrays indexed by SKU position) because demand is computed
for all SKU x store pairs at once every day; the table only ever grows (launches append).

Base demand of SKU ``s`` in store ``k`` (units/day, before any calendar or price effect)::

    base[s, k] = mean_units * popularity[s] / E[popularity] * store_factor[k] * affinity[s, k]

with log-normal popularity (many slow movers, a few fast ones) and affinity (regional tastes).

>>> from streams.simulator.config import SimulationConfig
>>> w = build_world(SimulationConfig(skus=10, stores=2), np.random.default_rng(0))
>>> len(w.skus), w.skus.base.shape, w.stores[0].store_id
(10, (10, 2), 'S001')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streams.simulator.config import SimulationConfig

__all__ = ["Category", "SkuTable", "Store", "Supplier", "World", "build_world", "launch_skus"]

_DEPARTMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Grocery", ("Snacks", "Beverages", "Pantry", "Breakfast", "Frozen", "Dairy")),
    ("Home", ("Kitchen", "Bedding", "Bath", "Decor", "Cleaning", "Storage")),
    ("Apparel", ("Womens", "Mens", "Kids", "Shoes", "Accessories", "Outerwear")),
    ("Electronics", ("Audio", "Phones", "Computers", "Gaming", "TV", "Cameras")),
    ("Toys", ("Games", "Puzzles", "Dolls", "Outdoor Play", "Building", "Plush")),
    ("Garden", ("Plants", "Tools", "Furniture", "Grills", "Lighting", "Pots")),
    ("Beauty", ("Skincare", "Makeup", "Hair", "Fragrance", "Nails", "Men Care")),
    ("Sports", ("Fitness", "Cycling", "Running", "Camping", "Team Sports", "Water")),
)
_TIERS = ("budget", "standard", "premium")
_TIER_WEIGHTS = np.array([0.3, 0.5, 0.2])
_TIER_PRICE = np.array([0.6, 1.0, 1.9])
# Cheaper items sell more units: the tilt keeps unit volumes plausible across tiers.
_TIER_POPULARITY = np.array([1.3, 1.0, 0.6])


@dataclass(frozen=True)
class Store:
    store_id: str
    region_id: str
    size_sqm: float
    demand_factor: float  # (size / mean size) ** 0.8, normalised to mean 1 over stores
    timezone: str


@dataclass(frozen=True)
class Category:
    category_id: str
    name: str
    department_id: str
    department_name: str
    department_idx: int
    supplier_idx: int  # main supplier of the category's SKUs


@dataclass(frozen=True)
class Supplier:
    supplier_id: str
    mean_lead_days: float  # gamma-distributed lead time, this mean...
    lead_shape: float  # ...and this shape (higher = less variable)
    fill_rate: float  # share of purchase orders shipped complete
    incident_rate: float  # chance of a quality incident per shipment

    @property
    def committed_lead_days(self) -> int:
        """Lead time the supplier promises on every purchase order."""
        return max(2, round(self.mean_lead_days))


class SkuTable:
    """Every SKU launched so far, column-wise; position ``i`` is the SKU's index."""

    def __init__(self, n_stores: int) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}  # SKU id -> position
        self.names: list[str] = []
        self.tiers: list[str] = []
        self.category = np.zeros(0, dtype=np.int64)
        self.department = np.zeros(0, dtype=np.int64)
        self.supplier = np.zeros(0, dtype=np.int64)
        self.launch_day = np.zeros(0, dtype=np.int64)  # day index; negative = before start
        self.ref_price = np.zeros(0)  # launch price: the reference for the price effect
        self.price = np.zeros(0)  # current shelf price (changed by the pricing module)
        self.elasticity = np.zeros(0)
        self.popularity = np.zeros(0)
        self.ramp_days = np.zeros(0)  # 0 = no ramp-up (SKUs on sale before the start)
        self.base = np.zeros((0, n_stores))

    def __len__(self) -> int:
        return len(self.ids)

    def launched(self, day: int) -> np.ndarray:
        """Boolean mask of SKUs on sale on ``day``."""
        return self.launch_day <= day


@dataclass
class World:
    config: SimulationConfig
    stores: list[Store]
    categories: list[Category]
    suppliers: list[Supplier]
    skus: SkuTable
    department_ids: list[str]
    department_names: list[str]
    department_price: np.ndarray  # typical standard-tier price per department

    @property
    def store_factor(self) -> np.ndarray:
        return np.array([s.demand_factor for s in self.stores])


def _round_price(p: float) -> float:
    """Shelf prices end in .99 (and are never below 0.99)."""
    return max(0.99, math.floor(p) + 0.99)


def _stores(cfg: SimulationConfig, rng: np.random.Generator) -> list[Store]:
    sizes = np.clip(rng.lognormal(math.log(1500.0), 0.35, size=cfg.stores), 400.0, 6000.0)
    sizes = np.round(sizes / 10.0) * 10.0
    factor = (sizes / sizes.mean()) ** 0.8
    factor = factor / factor.mean()
    # One store per region first so no region is empty, the rest anywhere.
    region = np.concatenate(
        [np.arange(min(cfg.regions, cfg.stores)), rng.integers(0, cfg.regions, cfg.stores)]
    )[: cfg.stores]
    return [
        Store(
            f"S{k + 1:03d}",
            f"R{region[k] + 1:02d}",
            float(sizes[k]),
            float(factor[k]),
            cfg.timezone,
        )
        for k in range(cfg.stores)
    ]


def _suppliers(cfg: SimulationConfig, rng: np.random.Generator) -> list[Supplier]:
    return [
        Supplier(
            supplier_id=f"SUP{j + 1:03d}",
            mean_lead_days=float(rng.uniform(3.0, 14.0)),
            lead_shape=float(rng.uniform(3.0, 8.0)),
            fill_rate=float(rng.uniform(0.85, 0.99)),
            incident_rate=float(rng.uniform(0.005, 0.03)),
        )
        for j in range(cfg.suppliers)
    ]


def _categories(
    cfg: SimulationConfig, rng: np.random.Generator
) -> tuple[list[Category], list[str], list[str]]:
    dept_ids, dept_names, cats = [], [], []
    supplier_of = rng.permutation(cfg.departments * cfg.categories_per_department) % cfg.suppliers
    for d in range(cfg.departments):
        name, cat_names = _DEPARTMENTS[d] if d < len(_DEPARTMENTS) else (f"Department {d + 1}", ())
        dept_ids.append(f"D{d + 1:02d}")
        dept_names.append(name)
        for c in range(cfg.categories_per_department):
            cat_name = cat_names[c] if c < len(cat_names) else f"{name} {c + 1}"
            n = d * cfg.categories_per_department + c
            cats.append(
                Category(
                    f"CAT{d + 1:02d}{c + 1:02d}",
                    cat_name,
                    dept_ids[-1],
                    name,
                    d,
                    int(supplier_of[n]),
                )
            )
    return cats, dept_ids, dept_names


def build_world(cfg: SimulationConfig, rng: np.random.Generator) -> World:
    """Stores, suppliers, the product tree and the SKUs on sale on the first day."""
    stores = _stores(cfg, rng)
    suppliers = _suppliers(cfg, rng)
    categories, dept_ids, dept_names = _categories(cfg, rng)
    world = World(
        config=cfg,
        stores=stores,
        categories=categories,
        suppliers=suppliers,
        skus=SkuTable(len(stores)),
        department_ids=dept_ids,
        department_names=dept_names,
        department_price=np.exp(rng.uniform(math.log(6.0), math.log(60.0), cfg.departments)),
    )
    # SKUs on sale before the start: launched up to four years ago, fully ramped up.
    launch = -rng.integers(30, 1460, size=cfg.skus)
    _add_skus(world, launch, ramp=False, rng=rng)
    return world


def launch_skus(world: World, n: int, day: int, rng: np.random.Generator) -> np.ndarray:
    """Launch ``n`` new SKUs on ``day`` (cold start, with a ramp-up); returns their indices."""
    return _add_skus(world, np.full(n, day, dtype=np.int64), ramp=True, rng=rng)


def _add_skus(
    world: World, launch: np.ndarray, *, ramp: bool, rng: np.random.Generator
) -> np.ndarray:
    cfg, table = world.config, world.skus
    n, n_stores = len(launch), len(world.stores)
    first = len(table)
    cat = rng.integers(0, len(world.categories), size=n)
    dept = np.array([world.categories[c].department_idx for c in cat], dtype=np.int64)
    main = np.array([world.categories[c].supplier_idx for c in cat], dtype=np.int64)
    supplier = np.where(rng.random(n) < 0.8, main, rng.integers(0, cfg.suppliers, size=n))
    tier = rng.choice(3, size=n, p=_TIER_WEIGHTS)
    raw_price = world.department_price[dept] * _TIER_PRICE[tier] * rng.lognormal(0.0, 0.25, n)
    price = np.array([_round_price(p) for p in raw_price])
    sigma = cfg.popularity_sigma
    popularity = rng.lognormal(0.0, sigma, n) * _TIER_POPULARITY[tier]
    a_sigma = cfg.store_affinity_sigma
    affinity = rng.lognormal(-(a_sigma**2) / 2.0, a_sigma, size=(n, n_stores))
    # Normalised by the analytic mean of the log-normal, not the sample mean, so SKUs
    # launched later are on the same scale as the first ones.
    base = (
        cfg.mean_units_per_sku_store_day
        * (popularity / math.exp(sigma**2 / 2.0))[:, None]
        * world.store_factor[None, :]
        * affinity
    )
    elasticity = rng.uniform(*cfg.elasticity_range, size=n)
    ramp_days = rng.uniform(*cfg.launch_ramp_days, size=n) if ramp else np.zeros(n)
    for i in range(n):
        number = first + i + 1
        table.ids.append(f"SKU{number:05d}")
        table.index[table.ids[-1]] = first + i
        table.tiers.append(_TIERS[tier[i]])
        table.names.append(
            f"{_TIERS[tier[i]].title()} {world.categories[cat[i]].name} {number:05d}"
        )
    table.category = np.concatenate([table.category, cat])
    table.department = np.concatenate([table.department, dept])
    table.supplier = np.concatenate([table.supplier, supplier])
    table.launch_day = np.concatenate([table.launch_day, launch.astype(np.int64)])
    table.ref_price = np.concatenate([table.ref_price, price])
    table.price = np.concatenate([table.price, price])
    table.elasticity = np.concatenate([table.elasticity, elasticity])
    table.popularity = np.concatenate([table.popularity, popularity])
    table.ramp_days = np.concatenate([table.ramp_days, ramp_days])
    table.base = np.concatenate([table.base, base], axis=0)
    return np.arange(first, first + n)
