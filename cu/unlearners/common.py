"""Pieces that several unlearning methods share: a pausable stopwatch, finite-loss checks,
forget- and retained-accuracy tracking for Figure 2."""
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
    `measure(model, data, idx)` defaults to the training-set accuracy, `measure_retained` to the test-set one.

    Every recorded point also keeps the method's own seconds so far (`seconds`, the stopwatch's time,
    bookkeeping excluded: a unit shared by all methods), the number of calls so far (`steps`) and,
    when `retain` test indices are given (D_ts^r, `split.test_retain`), the accuracy on a fixed subset
    of `size` of them (`retained`), so that a method that wrecks the model does not look ideal.
    `every` = k records every k-th call only (the first call and each k-th after it), which bounds
    the cost of tracking a method that calls it after every small step; the last state may then fall
    between two points (the tables report it). `extra()` is what a Record keeps besides `curve`.
    """

    def __init__(self, data: DeviceData, forget: torch.Tensor, size: int, seed: int, clock: Stopwatch,
                 measure=None, retain: torch.Tensor | None = None, every: int = 1, measure_retained=None):
        if int(every) < 1:
            raise ValueError(f"track_every={every}: record every k-th step with k >= 1 (1: every step)")
        self.data, self.clock, self.every = data, clock, int(every)
        self.idx = tracking_subset(data, forget, size, seed) if size else None
        self.retain_idx = (tracking_subset(data, retain, size, seed)
                           if size and retain is not None and len(retain) else None)
        self.measure = measure or forget_accuracy
        self.measure_retained = measure_retained or retained_accuracy
        self.points: list[float] = []
        self.labels: list[str] = []
        self.retained: list[float] = []
        self.seconds: list[float] = []
        self.steps: list[int] = []
        self.calls = 0

    def __call__(self, model, label: str | None = None) -> None:
        self.calls += 1
        if self.idx is None or (self.calls - 1) % self.every:
            return
        with self.clock.paused():
            self.points.append(self.measure(model, self.data, self.idx))
            if self.retain_idx is not None:
                self.retained.append(self.measure_retained(model, self.data, self.retain_idx))
            self.seconds.append(self.clock.seconds)
        self.steps.append(self.calls)
        if label is not None:
            self.labels.append(label)

    def extra(self) -> dict:
        """The curve's other series, for a Record's `extra`: seconds, steps and (when tracked) retained."""
        if self.idx is None:
            return {}
        out = {"curve_seconds": list(self.seconds), "curve_steps": list(self.steps), "curve_every": self.every}
        if self.retain_idx is not None:
            out["curve_retained"] = list(self.retained)
        return out


def forget_accuracy(model, data: DeviceData, idx: torch.Tensor) -> float:
    return accuracy(model, data, "train", idx)


def retained_accuracy(model, data: DeviceData, idx: torch.Tensor) -> float:
    return accuracy(model, data, "test", idx)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, method: str, step: int) -> None:
    """One gradient step on `loss`, after stopping the method if the loss is not finite."""
    check_finite(loss, method, step)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
