"""The shared check suite, run on every model wrapper (subclasses of models.base.OnlineModel)."""

from __future__ import annotations

import copy
import importlib
import inspect
import pickle
import pkgutil

import pytest

import models
from models.base import OnlineModel


def _wrappers() -> list[type[OnlineModel]]:
    for info in pkgutil.walk_packages(models.__path__, "models."):
        importlib.import_module(info.name)
    found, todo = [], list(OnlineModel.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if not inspect.isabstract(cls):
            found.append(cls)
    return sorted(found, key=lambda c: c.__qualname__)


WRAPPERS = _wrappers()
ids = [c.__qualname__ for c in WRAPPERS]


def _trained(cls):
    model = cls._check_instance()
    samples = cls._check_samples()
    for x, y in samples:
        model._check_learn(x, y)
    return model, samples


def test_the_suite_sees_every_wrapper():
    # An empty registry would make every check below vacuous.
    assert WRAPPERS or not any(
        name for _, name, _ in pkgutil.walk_packages(models.__path__) if name != "base"
    )


@pytest.mark.parametrize("cls", WRAPPERS, ids=ids)
def test_pickle_round_trip_keeps_predictions(cls):
    model, samples = _trained(cls)
    clone = pickle.loads(pickle.dumps(model))
    for x, _ in samples:
        assert clone._check_predict(x) == model._check_predict(x)
    for x, y in samples[:3]:  # and it keeps learning
        clone._check_learn(x, y)


@pytest.mark.parametrize("cls", WRAPPERS, ids=ids)
def test_inputs_are_left_unchanged(cls):
    model = cls._check_instance()
    for x, y in cls._check_samples():
        x_before, y_before = copy.deepcopy(x), copy.deepcopy(y)
        model._check_predict(x)
        model._check_learn(x, y)
        assert x == x_before and y == y_before


@pytest.mark.parametrize("cls", WRAPPERS, ids=ids)
def test_missing_features_are_tolerated(cls):
    model, samples = _trained(cls)
    for x, y in samples:
        if isinstance(x, dict):
            for drop in list(x)[: max(1, len(x) // 2)]:
                partial = {k: v for k, v in x.items() if k != drop}
                model._check_predict(partial)
                model._check_learn(partial, y)
            model._check_predict({})


@pytest.mark.parametrize("cls", WRAPPERS, ids=ids)
def test_has_a_runnable_example(cls):
    module = inspect.getmodule(cls)
    docs = (module.__doc__ or "") + (cls.__doc__ or "")
    assert ">>>" in docs, f"{cls.__qualname__} needs a doctest example (run by --doctest-modules)"
