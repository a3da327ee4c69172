"""wf's public names: ``__all__`` lists exactly what the package offers, and all of it imports."""

from __future__ import annotations

import importlib
import re
from types import ModuleType

import pytest

import wf
import wf.engine


def public_names(module: ModuleType) -> set[str]:
    """What ``from module import ...`` offers: its non-underscore attributes, except submodules."""
    names = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    if hasattr(module, "__version__"):
        names.add("__version__")
    return names


@pytest.mark.parametrize("module", [wf, wf.engine], ids=["wf", "wf.engine"])
def test_all_is_exactly_the_public_names(module: ModuleType) -> None:
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    assert set(exported) == public_names(module)


@pytest.mark.parametrize("name", wf.__all__)
def test_each_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from wf import {name}", namespace)
    assert namespace[name] is getattr(wf, name)


def test_star_import_gives_all() -> None:
    namespace: dict[str, object] = {}
    exec("from wf import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(wf.__all__)


@pytest.mark.parametrize("name", [n for n in wf.__all__ if n != "__version__"])
def test_exported_objects_are_wf_objects(name: str) -> None:
    obj = getattr(wf, name)
    assert obj.__module__.split(".")[0] == "wf"
    # The object really lives where its module says it does.
    assert getattr(importlib.import_module(obj.__module__), obj.__qualname__) is obj


def test_the_user_api_is_exported() -> None:
    for name in (
        "WorkflowEntrypoint",
        "WorkflowEvent",
        "WorkflowStep",
        "StepContext",
        "StepConfig",
        "RetryConfig",
        "NonRetryableError",
        "StepError",
    ):
        assert name in wf.__all__


def test_version_is_a_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", wf.__version__)
