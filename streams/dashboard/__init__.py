"""``retailpulse dashboard``: a live, read-only web page over the Redis contract.

See docs/dashboard.md. :func:`serve` gives a bound :class:`DashboardServer` (``.url``,
``.start()``, ``.stop()``) usable in-process by tests and the demo.
"""

from __future__ import annotations

from streams.dashboard.server import DashboardServer, serve

__all__ = ["DashboardServer", "serve"]
