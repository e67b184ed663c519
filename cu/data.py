"""Datasets in memory, unlearning splits as index sets, and seeded batches.

A `Dataset` holds uint8 images (N, C, H, W) with labels and class names (`cu.datasets.load_dataset`
reads one from its files: kept apart, so that a change to file handling does not change the
fingerprint that keys every trained model). `Dataset.to(device)` normalises with the dataset's own per-channel mean and std
(computed on its training set) and puts everything on the device once; batches are then index
tensors from seeded permutations (as in airbench's CifarLoader), never a DataLoader.

Unlearning splits (`class_split`, `random_split`) are index sets into the training and test sets:
  class c : D_tr^u = training samples of class c, D_tr^r = the rest; D_ts^u / D_ts^r likewise.
  random n: D_tr^u = n training samples drawn with a seeded generator across classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cu.runtime import as_int

TASKS = ("class", "sample")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A whole dataset in memory: uint8 images (N, C, H, W), int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def channel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std of the training images, in [0, 1] units."""
        x = self.x_train.astype(np.float64) / 255.0
        return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))

    def to(self, device: torch.device | str) -> "DeviceData":
        """Normalised float tensors on `device` (channels_last for 4-d images), built once."""
        mean, std = self.channel_stats()
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

        def prep(x):
            t = (torch.from_numpy(x).float().div_(255.0) - mean_t) / std_t
            return t.contiguous(memory_format=torch.channels_last).to(device)

        return DeviceData(
            name=self.name,
            x_train=prep(self.x_train),
            y_train=torch.from_numpy(self.y_train).long().to(device),
            x_test=prep(self.x_test),
            y_test=torch.from_numpy(self.y_test).long().to(device),
            num_classes=self.num_classes,
            class_names=self.class_names,
        )

    def __repr__(self) -> str:
        return (f"Dataset({self.name}: {len(self.y_train)} train / {len(self.y_test)} test, "
                f"{self.in_channels}x{self.image_size}x{self.image_size}, {self.num_classes} classes)")


@dataclass(frozen=True, eq=False)
class DeviceData:
    """The dataset as normalised tensors on one device; subsets are index tensors."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def subset(self, part: str, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of `part` ('train' or 'test'), restricted to `idx` when given."""
        if part not in ("train", "test"):
            raise ValueError(f"part={part!r}: expected 'train' or 'test'")
        x, y = (self.x_train, self.y_train) if part == "train" else (self.x_test, self.y_test)
        if idx is None:
            return x, y
        idx = idx.to(x.device)
        return x[idx], y[idx]


# --------------------------------------------------------------------------- splits

@dataclass(frozen=True, eq=False)
class Split:
    """An unlearning request as index sets (CPU int64 tensors, sorted).

    forget / retain        : D_tr^u / D_tr^r (partition the training set)
    test_forget/test_retain: D_ts^u / D_ts^r for class unlearning; for sample unlearning
                             test_forget is empty and test_retain is the whole test set D_ts.
    """

    task: str
    forget: torch.Tensor
    retain: torch.Tensor
    test_forget: torch.Tensor
    test_retain: torch.Tensor
    num_classes: int
    forget_class: int | None = None
    seed: int | None = None
    meta: dict = field(default_factory=dict)

    @property
    def test(self) -> torch.Tensor:
        return torch.cat([self.test_forget, self.test_retain]).sort().values

    def describe(self) -> str:
        what = (f"class {self.forget_class}" if self.task == "class" else
                f"{len(self.forget)} random samples (seed {self.seed})" if self.seed is not None else
                f"{len(self.forget)} given samples")
        return (f"forget {what}: |D_tr^u|={len(self.forget)}, |D_tr^r|={len(self.retain)}, "
                f"|D_ts^u|={len(self.test_forget)}, |D_ts^r|={len(self.test_retain)}")


def _labels(data) -> tuple[torch.Tensor, torch.Tensor]:
    y_tr, y_te = data.y_train, data.y_test
    as_t = lambda y: (y.detach().cpu() if torch.is_tensor(y) else torch.from_numpy(np.asarray(y))).long()  # noqa: E731
    return as_t(y_tr), as_t(y_te)


def class_split(data: Dataset | DeviceData, forget_class: int) -> Split:
    """Single-class unlearning: every training sample of `forget_class` is forgotten."""
    c = as_int(forget_class, "forget_class")
    if not 0 <= c < data.num_classes:
        raise ValueError(f"forget_class={c} is out of range for {data.name}: use a class index in "
                         f"0..{data.num_classes - 1} ({', '.join(data.class_names)})")
    y_tr, y_te = _labels(data)
    forget = torch.nonzero(y_tr == c).flatten()
    retain = torch.nonzero(y_tr != c).flatten()
    if len(retain) == 0:
        raise ValueError(f"forgetting class {c} leaves no retained training samples; pick another class")
    return Split("class", forget, retain, torch.nonzero(y_te == c).flatten(),
                 torch.nonzero(y_te != c).flatten(), data.num_classes, forget_class=c)


def random_split(data: Dataset | DeviceData, n: int, seed: int = 0) -> Split:
    """Sample unlearning: `n` training samples drawn uniformly without replacement (seeded)."""
    n = as_int(n, "n_forget")
    y_tr, y_te = _labels(data)
    if not 0 < n < len(y_tr):
        raise ValueError(f"n_forget={n} must be between 1 and {len(y_tr) - 1} (the training set of "
                         f"{data.name} has {len(y_tr)} samples and at least one must be retained)")
    seed = as_int(seed, "seed")
    perm = torch.randperm(len(y_tr), generator=torch.Generator().manual_seed(seed))
    return _sample_split(data, perm[:n].sort().values, len(y_tr), len(y_te), seed=seed)


def _sample_split(data, forget: torch.Tensor, n_train: int, n_test: int, seed: int | None = None) -> Split:
    """The sample-unlearning Split of sorted, distinct training positions `forget`: every other
    training sample is retained, and the whole test set is D_ts (no test sample is 'forgotten')."""
    mask = torch.ones(n_train, dtype=torch.bool)
    mask[forget] = False
    return Split("sample", forget, torch.nonzero(mask).flatten(), torch.empty(0, dtype=torch.long),
                 torch.arange(n_test), data.num_classes, seed=seed)


def index_split(data: Dataset | DeviceData, indices) -> Split:
    """Sample unlearning of the training samples at `indices` (a list of ints, a tensor or array).

    Each index must be a distinct position in 0..n_train-1, and at least one sample must be retained.
    """
    if isinstance(indices, str):
        import yaml

        indices = yaml.safe_load(indices)
    if torch.is_tensor(indices) or isinstance(indices, np.ndarray):
        indices = indices.tolist()
    if isinstance(indices, int) or not isinstance(indices, (list, tuple)):
        raise TypeError(f"forget_indices={indices!r}: expected a list of training-set positions, e.g. [3, 17, 42]")
    idx = [as_int(i, "forget_indices[]") for i in indices]
    y_tr, y_te = _labels(data)
    n = len(y_tr)
    if not idx:
        raise ValueError("forget_indices is empty: give at least one training-set position to forget")
    bad = sorted({i for i in idx if not 0 <= i < n})
    if bad:
        raise ValueError(f"forget_indices {bad[:10]} are out of range: {data.name} has training positions 0..{n - 1}")
    seen, dup = set(), set()
    for i in idx:
        (dup if i in seen else seen).add(i)
    if dup:
        raise ValueError(f"forget_indices {sorted(dup)[:10]} appear more than once: list each sample once")
    if len(seen) == n:
        raise ValueError(f"forget_indices cover all {n} training samples: at least one must be retained")
    return _sample_split(data, torch.tensor(sorted(seen), dtype=torch.long), n, len(y_te))


def make_split(data, task: str, forget_class: int = 5, n_forget: int = 100, seed: int = 0,
               forget_indices=None) -> Split:
    """`task`='class' -> class_split(forget_class); 'sample' -> random_split(n_forget, seed), or
    index_split(forget_indices) when explicit indices are given."""
    if task == "class":
        return class_split(data, forget_class)
    if task == "sample":
        if forget_indices is not None:
            return index_split(data, forget_indices)
        return random_split(data, n_forget, seed)
    raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")


# --------------------------------------------------------------------------- batches

def batches(idx: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
            shuffle: bool = True, drop_last: bool = False):
    """Yield index tensors of `idx` in batches; shuffled by a seeded permutation of the CPU generator."""
    batch_size = as_int(batch_size, "batch_size")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    order = idx[torch.randperm(len(idx), generator=generator)] if shuffle else idx
    stop = len(order) - batch_size + 1 if drop_last else len(order)
    for start in range(0, max(stop, 0), batch_size):
        yield order[start:start + batch_size]


def sample(idx: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k indices of `idx` drawn without replacement (all of them if k >= len(idx))."""
    if k >= len(idx):
        return idx[torch.randperm(len(idx), generator=generator)]
    return idx[torch.randperm(len(idx), generator=generator)[:k]]
