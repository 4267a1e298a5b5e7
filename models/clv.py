"""Expected customer value over the next 365 days: expected purchases x expected spend.

The purchase count comes from the BG/NBD model (:mod:`models.bgnbd`); the spend per order
is a gamma-gamma style shrunk mean: a customer's own mean order value is pulled towards
the population mean by a pseudo-count ``shrink``, so a one-order customer is valued mostly
by the population and a regular by their own history. The population mean is a running
mean over every placed order (learned online; ``prior_spend`` before the first order).

>>> m = CLVModel(shrink=2.0, prior_spend=50.0)
>>> for v in (10.0, 30.0):
...     m.learn_one(v)
>>> m.population_mean
20.0
>>> m.expected_spend(orders=2, monetary=200.0)
60.0
>>> m.clv(expected_purchases=3.0, orders=2, monetary=200.0)
180.0
"""

from __future__ import annotations

import math
from typing import Any

from models.base import OnlineModel

__all__ = ["CLVModel"]


class CLVModel(OnlineModel):
    """Shrunk mean spend per order, times the expected number of orders."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(self, *, shrink: float = 3.0, prior_spend: float = 50.0) -> None:
        self.shrink = shrink
        self.prior_spend = prior_spend
        self.n = 0
        self.total = 0.0

    @property
    def population_mean(self) -> float:
        return self.total / self.n if self.n else self.prior_spend

    def learn_one(self, order_value: float) -> None:
        """One placed order's net value (non-finite or negative values are ignored)."""
        if math.isfinite(order_value) and order_value >= 0:
            self.n += 1
            self.total += order_value

    def expected_spend(self, orders: int, monetary: float) -> float:
        """Expected value of the customer's next order."""
        own = max(0.0, monetary)
        return (self.shrink * self.population_mean + own) / (self.shrink + max(0, orders))

    def clv(self, expected_purchases: float, orders: int, monetary: float) -> float:
        return max(0.0, expected_purchases) * self.expected_spend(orders, monetary)

    # -- contract hooks --------------------------------------------------------------------
    @classmethod
    def _check_instance(cls) -> CLVModel:
        return cls()

    @classmethod
    def _check_samples(cls) -> list[tuple[Any, Any]]:
        return [({"orders": i, "monetary": 20.0 * i, "purchases": 1.5}, 10.0 + i) for i in range(8)]

    def _check_learn(self, x: Any, y: Any) -> None:
        self.learn_one(float(y))

    def _check_predict(self, x: Any) -> Any:
        return round(
            self.clv(
                float(x.get("purchases", 1.0)), int(x.get("orders", 0)), float(x.get("monetary", 0))
            ),
            9,
        )
