"""The registry of unlearning methods: one signature for all.

    model, record = cu.unlearners.run(name, original, data, split, config=None, progress=False, **overrides)

`run` copies the Original (it is never changed in place), builds the method's hyperparameter
dataclass (`config`, or its defaults updated with `overrides`), checks the task, and calls the
method. Each method is one module in this package that does

    @register("name", config=NameConfig, tasks=("class", "sample"))
    def name(model, data, split, cfg, progress=False) -> tuple[nn.Module, Record]: ...

`UNLEARNERS` maps names to `Unlearner` entries; `get(name)` raises an error listing valid names.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
import pkgutil
import time
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from cu.data import DeviceData, Split
from cu.results import Record


@dataclass(frozen=True)
class Unlearner:
    name: str
    fn: Callable
    config: type
    tasks: tuple[str, ...]

    @property
    def doc(self) -> str:
        return (self.fn.__module__ and importlib.import_module(self.fn.__module__).__doc__) or ""


UNLEARNERS: dict[str, Unlearner] = {}


def register(name: str, config: type, tasks: tuple[str, ...] = ("class", "sample")):
    """Decorator: add a method to UNLEARNERS under `name`."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config of {name!r} must be a dataclass of hyperparameters")

    def deco(fn):
        if name in UNLEARNERS and UNLEARNERS[name].fn is not fn:
            raise ValueError(f"unlearner {name!r} is registered twice")
        UNLEARNERS[name] = Unlearner(name, fn, config, tuple(tasks))
        return fn

    return deco


def get(name: str) -> Unlearner:
    if name not in UNLEARNERS:
        raise ValueError(f"unknown unlearning method {name!r}; valid names: {', '.join(sorted(UNLEARNERS))}")
    return UNLEARNERS[name]


def names(task: str | None = None) -> list[str]:
    """Registered names (for one task when given), in registration order."""
    return [n for n, u in UNLEARNERS.items() if task is None or task in u.tasks]


def make_config(name: str, **overrides):
    """The method's hyperparameter dataclass: defaults updated with `overrides` (unknown keys are errors)."""
    u = get(name)
    fields = {f.name: f for f in dataclasses.fields(u.config)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise TypeError(f"{name}: unknown hyperparameter(s) {unknown}; valid: {', '.join(fields)}")
    return u.config(**overrides)


def run(name: str, original: nn.Module, data: DeviceData, split: Split, config=None, progress: bool = False,
        **overrides) -> tuple[nn.Module, Record]:
    """Unlearn `split` from a copy of `original` with method `name`; returns (model, record)."""
    u = get(name)
    if split.task not in u.tasks:
        raise ValueError(f"{name} is a {'/'.join(u.tasks)} unlearning method; the split is for {split.task} "
                         f"unlearning. Methods for {split.task}: {', '.join(names(split.task))}")
    if len(split.retain) == 0:
        raise ValueError("the split retains no training samples: nothing to keep the model on; "
                         "forget fewer samples or another class")
    if len(split.forget) == 0:
        raise ValueError("the split forgets no training samples: nothing to unlearn; check forget_class / "
                         "n_forget / forget_indices")
    cfg = config if config is not None else make_config(name, **overrides)
    model = copy.deepcopy(original)
    t0 = time.perf_counter()
    model, record = u.fn(model, data, split, cfg, progress=progress)
    if record.seconds <= 0:  # methods that do not time themselves
        record = dataclasses.replace(record, seconds=time.perf_counter() - t0)
    return model.eval(), record


# import every method module so that its @register runs
for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
