"""Avro schemas of every event family and the manifest of their versions and ids.

This package holds data only (``avro/*.avsc`` and ``manifest.json``); the code that reads
it lives in :mod:`streams.registry`. It is a package so an installed ``retailpulse`` finds
its schemas through :mod:`importlib.resources` wherever it is installed.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

__all__ = ["schema_root"]


def schema_root() -> Traversable:
    """Directory holding ``manifest.json`` and ``avro/``."""
    return files(__name__)
