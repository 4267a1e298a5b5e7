"""BG/NBD repeat-buying model, maintained online: P(alive) and expected purchases.

Each customer is summarised by the BG/NBD sufficient statistics (Fader, Hardie & Lee 2005):
``x`` repeat purchases, ``t_x`` the time of the last one and ``T`` the age, both in days
since the first purchase. The population parameters ``(r, alpha, a, b)`` (gamma-distributed
purchase rates, beta-distributed dropout probabilities) are estimated online like this:

* a **bounded reservoir** keeps the statistics of at most ``reservoir`` customers, chosen as
  the ones with the smallest crc32 of their id (a bottom-k sample: uniform over every
  customer seen, deterministic, so a replay picks the same ones). A sampled customer's entry
  is refreshed on each of their purchases; ``T`` is recomputed at fit time from the first
  purchase, so silent customers age correctly;
* every ``refit_days`` of **event time** the parameters are re-estimated by maximum
  likelihood (scipy L-BFGS-B on log-parameters, vectorised log-likelihood), warm-started
  from the previous estimate. Until ``min_customers`` are sampled the priors are used.

Predictions for one customer are closed-form (no per-customer fitting): P(alive), expected
purchases in the next ``t`` days, and P(no purchase in the next ``t`` days).

>>> m = BGNBDModel(r=0.8, alpha=30.0, a=1.5, b=12.0)
>>> round(m.p_alive(x=0, t_x=0.0, T=30.0), 3)
1.0
>>> round(m.p_alive(x=4, t_x=40.0, T=200.0), 3) < round(m.p_alive(x=4, t_x=190.0, T=200.0), 3)
True
>>> round(m.expected_purchases(90.0, x=4, t_x=190.0, T=200.0), 2)
1.53
"""

from __future__ import annotations

import heapq
import math
import zlib
from typing import Any

import numpy as np
from scipy import optimize, special

from models.base import OnlineModel

__all__ = ["BGNBDModel", "bgnbd_log_likelihood"]

DAY_MS = 86_400_000


def bgnbd_log_likelihood(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> float:
    """Total log-likelihood of ``(r, alpha, a, b)`` for arrays of customer statistics."""
    r, alpha, a, b = params
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b)
    a2 = a2 - special.gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return float(np.sum(a1 + a2 + np.logaddexp(a3, a4)))


class BGNBDModel(OnlineModel):
    """Population BG/NBD parameters, re-estimated online on a bottom-k reservoir."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(
        self,
        *,
        r: float = 0.8,
        alpha: float = 30.0,
        a: float = 1.0,
        b: float = 10.0,
        reservoir: int = 5_000,
        min_customers: int = 100,
        refit_days: float = 7.0,
    ) -> None:
        self.r, self.alpha, self.a, self.b = r, alpha, a, b
        self.reservoir = reservoir
        self.min_customers = min_customers
        self.refit_ms = int(refit_days * DAY_MS)
        # customer -> [x, first purchase ms, last purchase ms]
        self.sample: dict[str, list[int]] = {}
        self._heap: list[tuple[int, str]] = []  # (-crc, customer): the largest crc on top
        self.next_refit = -1
        self.fits = 0

    # -- the reservoir and the refit --------------------------------------------------------
    def observe(self, customer: str, x: int, first_ms: int, last_ms: int) -> None:
        """A purchase made ``customer``'s statistics ``x`` repeats, first/last purchase times."""
        entry = self.sample.get(customer)
        if entry is not None:
            entry[0], entry[1], entry[2] = x, first_ms, last_ms
            return
        crc = zlib.crc32(customer.encode())
        if len(self.sample) < self.reservoir:
            heapq.heappush(self._heap, (-crc, customer))
        elif -self._heap[0][0] > crc:
            _, dropped = heapq.heapreplace(self._heap, (-crc, customer))
            del self.sample[dropped]
        else:
            return
        self.sample[customer] = [x, first_ms, last_ms]

    def maybe_refit(self, now_ms: int) -> bool:
        """Refit when ``refit_days`` of event time have passed since the last one."""
        if self.next_refit < 0:
            self.next_refit = now_ms + self.refit_ms
            return False
        if now_ms < self.next_refit:
            return False
        self.next_refit = now_ms + self.refit_ms
        return self.refit(now_ms)

    def arrays(self, now_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, t_x, T) in days for the sampled customers, aged to ``now_ms``."""
        rows = np.array(list(self.sample.values()), dtype=np.float64).reshape(-1, 3)
        x = rows[:, 0]
        t_x = (rows[:, 2] - rows[:, 1]) / DAY_MS
        T = np.maximum((now_ms - rows[:, 1]) / DAY_MS, t_x)
        return x, t_x, T

    def refit(self, now_ms: int) -> bool:
        """Maximum-likelihood refit on the reservoir; keeps the old values if it fails."""
        if len(self.sample) < self.min_customers:
            return False
        x, t_x, T = self.arrays(now_ms)
        return self.fit_arrays(x, t_x, T)

    def fit_arrays(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> bool:
        def nll(logp: np.ndarray) -> float:
            return -bgnbd_log_likelihood(np.exp(logp), x, t_x, T) / len(x)

        start = np.log([self.r, self.alpha, self.a, self.b])
        bounds = [(-6.0, 6.0), (-6.0, 9.0), (-6.0, 6.0), (-6.0, 8.0)]
        res = optimize.minimize(nll, start, method="L-BFGS-B", bounds=bounds)
        if not np.all(np.isfinite(res.x)) or not math.isfinite(float(res.fun)):
            return False
        self.r, self.alpha, self.a, self.b = (float(v) for v in np.exp(res.x))
        self.fits += 1
        return True

    # -- predictions -----------------------------------------------------------------------
    def _odds_dead(self, x: float, t_x: float, T: float) -> float:
        if x <= 0:
            return 0.0
        return (self.a / (self.b + x - 1)) * ((self.alpha + T) / (self.alpha + t_x)) ** (self.r + x)

    def p_alive(self, x: float, t_x: float, T: float) -> float:
        """P(the customer has not dropped out), given their statistics (days)."""
        return 1.0 / (1.0 + self._odds_dead(x, t_x, T))

    def p_no_purchase(self, t: float, x: float, t_x: float, T: float) -> float:
        """P(no purchase in the next ``t`` days): dead, or alive with a quiet gamma rate."""
        alive = self.p_alive(x, t_x, T)
        quiet = ((self.alpha + T) / (self.alpha + T + t)) ** (self.r + x)
        return (1.0 - alive) + alive * quiet

    def expected_purchases(self, t: float, x: float, t_x: float, T: float) -> float:
        """E[purchases in the next ``t`` days | x, t_x, T] (Fader-Hardie-Lee eq. 10)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        if a <= 1.0:  # the closed form needs a > 1; a tiny shift keeps it finite
            a = 1.0 + 1e-6
        z = t / (alpha + T + t)
        hyp = float(special.hyp2f1(r + x, b + x, a + b + x - 1, z))
        head = (a + b + x - 1) / (a - 1)
        body = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        value = head * body / (1.0 + self._odds_dead(x, t_x, T))
        return max(0.0, value) if math.isfinite(value) else 0.0

    def params(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    # -- contract hooks --------------------------------------------------------------------
    @classmethod
    def _check_instance(cls) -> BGNBDModel:
        return cls(reservoir=50, min_customers=3, refit_days=1.0)

    @classmethod
    def _check_samples(cls) -> list[tuple[Any, Any]]:
        return [
            ({"customer": f"C{i}", "x": i % 4, "first_ms": 0, "last_ms": i * DAY_MS}, i * DAY_MS)
            for i in range(12)
        ] + [({"customer": "C99"}, 12 * DAY_MS)]

    def _check_learn(self, x: Any, y: Any) -> None:
        self.observe(
            x.get("customer", "?"),
            int(x.get("x", 0)),
            int(x.get("first_ms", 0)),
            int(x.get("last_ms", 0)),
        )
        self.maybe_refit(int(y))

    def _check_predict(self, x: Any) -> Any:
        T = 30.0
        t_x = min(T, float(x.get("last_ms", 0)) / DAY_MS)
        n = float(x.get("x", 0))
        return (round(self.p_alive(n, t_x, T), 9), round(self.expected_purchases(90, n, t_x, T), 9))
