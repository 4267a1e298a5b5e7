"""The contract every model wrapper in ``models/`` meets, checked by one shared suite.

Like River's ``check_estimator``, ``tests/test_model_contract.py`` runs the same checks on
every subclass of :class:`OnlineModel`: it survives a pickle round-trip (same predictions
after), it leaves its inputs unchanged, it tolerates missing features, and its module or
class docstring carries a runnable example. A wrapper says how to exercise it through the
four ``_check_*`` hooks; its public API stays its own (``learn_one``/``predict_one``,
``forecast``, ``update``/``score``...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

__all__ = ["OnlineModel"]


class OnlineModel(ABC):
    """Base of every model wrapper (no I/O, no wall clock: time comes in with the data)."""

    @classmethod
    @abstractmethod
    def _check_instance(cls) -> OnlineModel:
        """A fresh instance with small parameters, for the shared checks."""

    @classmethod
    @abstractmethod
    def _check_samples(cls) -> list[tuple[Any, Any]]:
        """(x, y) pairs to learn from, in order; include some with features missing."""

    @abstractmethod
    def _check_learn(self, x: Any, y: Any) -> None:
        """Learn from one sample (through the public API)."""

    @abstractmethod
    def _check_predict(self, x: Any) -> Any:
        """Predict for one sample (through the public API); must be comparable with ==."""
