"""Pieces that several unlearning methods share: a pausable stopwatch, finite-loss checks,
forget-accuracy tracking for Figure 2."""
from __future__ import annotations

import math
import time

import torch

from cu.data import DeviceData, sample
from cu.training import accuracy


class Stopwatch:
    """Wall seconds of the method itself; `paused()` excludes bookkeeping (e.g. Figure 2 curves)."""

    def __init__(self):
        self.seconds = 0.0
        self._t = time.perf_counter()

    def paused(self):
        sw = self

        class _Pause:
            def __enter__(self):
                sw.seconds += time.perf_counter() - sw._t

            def __exit__(self, *exc):
                sw._t = time.perf_counter()

        return _Pause()

    def stop(self) -> float:
        self.seconds += time.perf_counter() - self._t
        self._t = time.perf_counter()
        return self.seconds


def check_finite(loss: torch.Tensor, method: str, step: int) -> None:
    """Stop a method whose loss is NaN or infinite, naming the method and the step."""
    v = float(loss.detach())
    if not math.isfinite(v):
        raise FloatingPointError(f"{method}: loss became {v} at step {step}; nothing was recorded. "
                                 f"Lower the learning rate or check the inputs.")


def tracking_subset(data: DeviceData, idx: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """A fixed subset (k samples) of the forget set on which curves are tracked cheaply."""
    return sample(idx, k, torch.Generator().manual_seed(seed + 7919)).sort().values


class ForgetCurve:
    """Figure 2's curve: forget accuracy on a fixed subset of D_tr^u (`tracking_subset`, `size`
    samples; 0 turns it off), measured with the method's stopwatch paused. Call it with the model
    after each step of interest, with an optional `label` of the step (kept in `labels`, one per point);
    `measure(model, data, idx)` defaults to the training-set accuracy."""

    def __init__(self, data: DeviceData, forget: torch.Tensor, size: int, seed: int, clock: Stopwatch,
                 measure=None):
        self.data, self.clock = data, clock
        self.idx = tracking_subset(data, forget, size, seed) if size else None
        self.measure = measure or forget_accuracy
        self.points: list[float] = []
        self.labels: list[str] = []

    def __call__(self, model, label: str | None = None) -> None:
        if self.idx is not None:
            with self.clock.paused():
                self.points.append(self.measure(model, self.data, self.idx))
            if label is not None:
                self.labels.append(label)


def forget_accuracy(model, data: DeviceData, idx: torch.Tensor) -> float:
    return accuracy(model, data, "train", idx)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, method: str, step: int) -> None:
    """One gradient step on `loss`, after stopping the method if the loss is not finite."""
    check_finite(loss, method, step)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
