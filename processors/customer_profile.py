"""Per-customer profile from orders and clickstream: compact, pure, packable for eviction.

A :class:`CustomerProfile` is a slotted dataclass of scalars (no dicts of lists): recency,
frequency and monetary value, tenure, inter-purchase time statistics (Welford, in days),
cancellations, returns, discount share, the few categories bought most, and from the
clickstream: sessions, product views, cart adds, abandoned carts, recommendation clicks and
the last visit. Everything is in event time (epoch ms); "now" is always passed in, so a
replay computes the same features as a live run.

Anonymous browsing is attached to the customer through :class:`AnonymousActivity`: what a
device does before anyone logs in is counted there and merged into the customer's profile
at the LOGIN (or at the first event that names the customer), and the device is remembered
as that customer's afterwards.

Idle customers are evicted from the hot map as :func:`pack` bytes (about 100 bytes) and
restored with :func:`unpack`, which gives back an equal profile.

>>> p = new_profile(0)
>>> apply_order(p, "ORDER_PLACED", [{"quantity": 2, "unit_price": 10.0, "discount": 1.0,
...                                  "sku": "K1"}], 0, {"K1": "CAT1"}.get)
>>> p.orders, p.monetary, round(p.discount_value, 2), p.top_categories()
(1, 18.0, 2.0, ['CAT1'])
>>> unpack(pack(p)) == p
True
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DAY_MS",
    "FEATURE_NAMES",
    "AnonymousActivity",
    "CustomerProfile",
    "apply_click",
    "apply_order",
    "features",
    "new_profile",
    "pack",
    "packed_times",
    "unpack",
]

DAY_MS = 86_400_000
MAX_CATEGORIES = 3  # categories kept per customer (space-saving top-k)
_NEVER = -1


@dataclass(slots=True)
class CustomerProfile:
    """Sufficient statistics of one customer. Times are epoch ms, -1 when never."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    first_seen: int
    last_event: int = _NEVER
    first_purchase: int = _NEVER
    last_purchase: int = _NEVER
    last_visit: int = _NEVER
    orders: int = 0  # placed orders (frequency)
    monetary: float = 0.0  # net spend of placed orders, less cancellations
    gross_value: float = 0.0  # list value of placed orders
    discount_value: float = 0.0
    ipt_n: int = 0  # inter-purchase times (days), Welford
    ipt_mean: float = 0.0
    ipt_m2: float = 0.0
    cancels: int = 0
    returns: int = 0
    returned_value: float = 0.0
    sessions: int = 0
    product_views: int = 0
    cart_adds: int = 0
    abandoned_carts: int = 0
    rec_clicks: int = 0
    session_hash: int = 0  # crc of the current session id: a new one starts a session
    session_cart: bool = False  # the current session added to cart
    session_bought: bool = False  # ... and ended in an order
    cat1: str = ""
    n1: int = 0
    cat2: str = ""
    n2: int = 0
    cat3: str = ""
    n3: int = 0
    scored_at: int = _NEVER  # the last churn score published for this customer
    risk: float = -1.0

    def top_categories(self) -> list[str]:
        pairs = [(self.n1, self.cat1), (self.n2, self.cat2), (self.n3, self.cat3)]
        return [c for n, c in sorted(pairs, key=lambda p: (-p[0], p[1])) if c and n > 0]

    def add_category(self, cat: str) -> None:
        """Space-saving counter over 3 slots: the heavy categories survive."""
        for i, (c, n) in enumerate(
            ((self.cat1, self.n1), (self.cat2, self.n2), (self.cat3, self.n3))
        ):
            if c == cat:
                self._set_cat(i, cat, n + 1)
                return
        counts = [self.n1, self.n2, self.n3]
        low = counts.index(min(counts))
        self._set_cat(low, cat, counts[low] + 1)

    def _set_cat(self, i: int, cat: str, n: int) -> None:
        if i == 0:
            self.cat1, self.n1 = cat, n
        elif i == 1:
            self.cat2, self.n2 = cat, n
        else:
            self.cat3, self.n3 = cat, n


@dataclass(slots=True)
class AnonymousActivity:
    """A device (anonymous_id): its customer once known, else activity waiting for a login."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    last_seen: int
    customer_id: str | None = None
    sessions: int = 0
    product_views: int = 0
    cart_adds: int = 0
    rec_clicks: int = 0
    last_visit: int = _NEVER

    session_hash: int = 0  # crc of the device's current session id

    def count(self, event_type: str, session_hash: int, t: int) -> None:
        self.sessions += session_hash != self.session_hash
        self.session_hash = session_hash
        self.product_views += event_type == "PRODUCT_VIEW"
        self.cart_adds += event_type == "ADD_TO_CART"
        self.rec_clicks += event_type == "RECOMMENDATION_CLICK"
        self.last_visit = max(self.last_visit, t)

    def merge_into(self, p: CustomerProfile) -> None:
        """Hand the pre-login activity to the customer, then forget it here."""
        p.sessions += self.sessions
        p.product_views += self.product_views
        p.cart_adds += self.cart_adds
        p.rec_clicks += self.rec_clicks
        p.last_visit = max(p.last_visit, self.last_visit)
        if self.sessions:  # the session in progress goes on as the customer's
            p.session_hash, p.session_cart, p.session_bought = self.session_hash, False, False
        self.sessions = self.product_views = self.cart_adds = self.rec_clicks = 0


def new_profile(t: int) -> CustomerProfile:
    return CustomerProfile(first_seen=t, last_event=t)


def _order_amounts(lines: Iterable[Mapping[str, Any]]) -> tuple[float, float]:
    """(net value, discount) of order lines; bad numbers count as zero."""
    net = disc = 0.0
    for line in lines:
        q = float(line.get("quantity") or 0)
        price = float(line.get("unit_price") or 0.0)
        d = float(line.get("discount") or 0.0)
        if math.isfinite(q * price * d):
            net += q * (price - d)
            disc += q * d
    return net, disc


def apply_order(
    p: CustomerProfile,
    event_type: str,
    lines: list[Mapping[str, Any]],
    t: int,
    category_of: Callable[[str], str | None],
) -> None:
    """Update ``p`` with one order event at event time ``t`` (ms)."""
    net, disc = _order_amounts(lines)
    p.last_event = max(p.last_event, t)
    if event_type == "ORDER_PLACED":
        if p.last_purchase != _NEVER and t >= p.last_purchase:
            gap = (t - p.last_purchase) / DAY_MS
            p.ipt_n += 1
            delta = gap - p.ipt_mean
            p.ipt_mean += delta / p.ipt_n
            p.ipt_m2 += delta * (gap - p.ipt_mean)
        if p.first_purchase == _NEVER:
            p.first_purchase = t
        p.last_purchase = max(p.last_purchase, t)
        p.orders += 1
        p.monetary += net
        p.gross_value += net + disc
        p.discount_value += disc
        p.session_bought = True  # an online order closes the session's cart
        for line in lines:
            cat = category_of(str(line.get("sku")))
            if cat:
                p.add_category(cat)
    elif event_type == "ORDER_CANCELLED":
        p.cancels += 1
        p.monetary = max(0.0, p.monetary - net)
    elif event_type == "ORDER_RETURNED":
        p.returns += 1
        p.returned_value += net


def apply_click(p: CustomerProfile, event_type: str, session_hash: int, t: int) -> bool:
    """Update ``p`` with one clickstream event; returns True when it opened a new session."""
    new_session = session_hash != p.session_hash
    if new_session:
        if p.session_hash and p.session_cart and not p.session_bought:
            p.abandoned_carts += 1
        p.session_hash, p.session_cart, p.session_bought = session_hash, False, False
        p.sessions += 1
    p.product_views += event_type == "PRODUCT_VIEW"
    if event_type == "ADD_TO_CART":
        p.cart_adds += 1
        p.session_cart = True
    p.rec_clicks += event_type == "RECOMMENDATION_CLICK"
    p.last_visit = max(p.last_visit, t)
    p.last_event = max(p.last_event, t)
    return new_session


FEATURE_NAMES: tuple[str, ...] = (
    "log_recency_days",
    "log_frequency",
    "log_monetary",
    "log_avg_order",
    "log_tenure_days",
    "ipt_mean_days",
    "ipt_cv",
    "recency_over_ipt",
    "return_rate",
    "cancel_rate",
    "discount_share",
    "category_breadth",
    "log_sessions",
    "log_product_views",
    "abandon_rate",
    "log_rec_clicks",
    "log_days_since_visit",
    "visited",
    "visited_since_purchase",
)


def features(p: CustomerProfile, now: int) -> dict[str, float]:
    """Profile features at event time ``now`` (ms); see :data:`FEATURE_NAMES`."""
    last = p.last_purchase if p.last_purchase != _NEVER else p.first_seen
    recency = max(0.0, (now - last) / DAY_MS)
    tenure = max(0.0, (now - p.first_seen) / DAY_MS)
    ipt_sd = math.sqrt(p.ipt_m2 / (p.ipt_n - 1)) if p.ipt_n > 1 else 0.0
    ipt = p.ipt_mean if p.ipt_n else 0.0
    orders = max(1, p.orders)
    visit = (now - p.last_visit) / DAY_MS if p.last_visit != _NEVER else 365.0
    return {
        "log_recency_days": math.log1p(recency),
        "log_frequency": math.log1p(p.orders),
        "log_monetary": math.log1p(p.monetary),
        "log_avg_order": math.log1p(p.monetary / orders),
        "log_tenure_days": math.log1p(tenure),
        "ipt_mean_days": ipt,
        "ipt_cv": ipt_sd / ipt if ipt > 0 else 0.0,
        "recency_over_ipt": min(10.0, recency / ipt) if ipt > 0 else 0.0,
        "return_rate": p.returns / orders,
        "cancel_rate": p.cancels / orders,
        "discount_share": p.discount_value / p.gross_value if p.gross_value > 0 else 0.0,
        "category_breadth": float(len(p.top_categories())),
        "log_sessions": math.log1p(p.sessions),
        "log_product_views": math.log1p(p.product_views),
        "abandon_rate": p.abandoned_carts / p.sessions if p.sessions else 0.0,
        "log_rec_clicks": math.log1p(p.rec_clicks),
        "log_days_since_visit": math.log1p(max(0.0, min(365.0, visit))),
        "visited": float(p.last_visit != _NEVER),
        "visited_since_purchase": float(p.last_visit > last),
    }


# -- eviction: a profile as ~100 bytes ----------------------------------------------------
_INT_FIELDS = [
    "first_seen",
    "last_event",
    "first_purchase",
    "last_purchase",
    "last_visit",
    "orders",
    "ipt_n",
    "cancels",
    "returns",
    "sessions",
    "product_views",
    "cart_adds",
    "abandoned_carts",
    "rec_clicks",
    "session_hash",
    "session_cart",
    "session_bought",
    "n1",
    "n2",
    "n3",
    "scored_at",
]
_FLOAT_FIELDS = [
    "monetary",
    "gross_value",
    "discount_value",
    "ipt_mean",
    "ipt_m2",
    "returned_value",
    "risk",
]
# times as int64, counters as int32, the session crc as uint32, two flags, then floats
_HEAD = struct.Struct("<5q9iI2?3iq7d")


_TIMES = struct.Struct("<q")
_LAST_EVENT_AT = 8  # second int64 of the head
_SCORED_AT = struct.calcsize("<5q9iI2?3i")


def packed_times(data: bytes) -> tuple[int, int]:
    """(last_event, scored_at) of a packed profile, without unpacking it."""
    return _TIMES.unpack_from(data, _LAST_EVENT_AT)[0], _TIMES.unpack_from(data, _SCORED_AT)[0]


def pack(p: CustomerProfile) -> bytes:
    """The profile as compact bytes (categories as a short utf-8 tail)."""
    head = _HEAD.pack(
        *(getattr(p, f) for f in _INT_FIELDS), *(getattr(p, f) for f in _FLOAT_FIELDS)
    )
    return head + "\x1f".join((p.cat1, p.cat2, p.cat3)).encode()


def unpack(data: bytes) -> CustomerProfile:
    """Inverse of :func:`pack`."""
    values = _HEAD.unpack_from(data)
    kw: dict[str, Any] = dict(zip((*_INT_FIELDS, *_FLOAT_FIELDS), values, strict=True))
    kw["cat1"], kw["cat2"], kw["cat3"] = data[_HEAD.size :].decode().split("\x1f")
    return CustomerProfile(**kw)
