"""What every notebook does first: load the data onto a device and get the Original model."""
from __future__ import annotations

from pathlib import Path

import torch

from cu.data import DeviceData, Dataset, load_dataset
from cu.runtime import get_device
from cu.training import TrainConfig, train_cached


def prepare(dataset: str, data_root: str | None, model: str, width: int, recipe: TrainConfig,
            device: str = "auto", cache_dir: str | Path | None = "checkpoints", progress: bool = False,
            download: bool = False) -> tuple[Dataset, DeviceData, torch.nn.Module, dict]:
    """(dataset, device data, Original model, its training history); the Original comes from the cache
    when one of the same configuration exists, otherwise it is trained and cached."""
    ds = load_dataset(dataset, data_root, download=download)
    data = ds.to(get_device(device))
    original, history = train_cached(data, model, width, ds.in_channels, recipe, cache_dir=cache_dir,
                                     progress=progress)
    return ds, data, original, history
