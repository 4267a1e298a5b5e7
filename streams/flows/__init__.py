"""Model flows that hang on the ingest dataflow (demand, customers, supply).

Each module defines a :class:`~streams.dataflow.FlowExtension`; :func:`default_extensions`
lists the ones ``retailpulse run`` wires in.
"""

from __future__ import annotations

from streams.dataflow import FlowExtension
from streams.settings import Settings

__all__ = ["default_extensions"]


def default_extensions(settings: Settings) -> list[FlowExtension]:
    """The model flows to run, in a fixed order (their step ids never depend on it)."""
    from streams.flows.customers import CustomerFlow
    from streams.flows.demand import DemandFlow
    from streams.flows.supply import SupplyFlow

    # Demand is built first: the supply flow reads its forecasts for days of cover.
    demand = DemandFlow(settings.demand)
    return [demand, SupplyFlow(settings.supply, forecasts=demand), CustomerFlow(settings.customers)]
