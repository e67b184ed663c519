"""Retrain: the exact-unlearning reference (the paper's "Retrain", Sec. 5.1).

A fresh model of the Original's architecture is trained from scratch on D_tr^r only, with the
Original model's recipe (cross-entropy, SGD + momentum, weight decay, cosine, no augmentation).
It is cached like the Original, under a key that includes the forget set, so notebooks 02-05
train it once per (split, model, recipe, seed).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch.nn as nn

from cu.data import DeviceData, Split
from cu.results import Record
from cu.training import TrainConfig, train_cached
from cu.unlearners import register


@dataclass(frozen=True)
class RetrainConfig:
    """The Original's recipe (pass the profile's values) and where the cache lives."""

    epochs: int = 30
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    seed: int = 0
    cache_dir: str | None = "../checkpoints"  # None: always train


def split_name(split: Split) -> str:
    """A stable name of the retained index set, for the cache key."""
    digest = hashlib.sha256(split.forget.numpy().tobytes()).hexdigest()[:12]
    what = f"class{split.forget_class}" if split.task == "class" else f"random{len(split.forget)}"
    return f"minus-{what}-{digest}"


@register("retrain", config=RetrainConfig, tasks=("class", "sample"))
def retrain(model: nn.Module, data: DeviceData, split: Split, cfg: RetrainConfig,
            progress: bool = False) -> tuple[nn.Module, Record]:
    recipe = TrainConfig(cfg.epochs, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.seed)
    arch = model.arch
    fresh, hist = train_cached(data, arch["name"], arch["width"], arch["in_channels"], recipe, idx=split.retain,
                               trained_on=split_name(split), cache_dir=cfg.cache_dir, progress=progress,
                               code=("cu.training", __name__))
    fresh.arch = arch
    # a cached Retrain reports the seconds its training took when it was trained
    return fresh, Record("retrain", split.task, seconds=hist["seconds"][-1], passes=cfg.epochs,
                         stopped="fixed", hparams=vars(cfg).copy())
