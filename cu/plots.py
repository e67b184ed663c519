"""Figures. Each function returns a matplotlib Figure; `save_figure` writes PNG and PDF."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from cu.runtime import atomic_write


def save_figure(fig, folder: str | Path, name: str, dpi: int = 150) -> list[Path]:
    """Save `fig` as `<folder>/<name>.png` and `.pdf` (atomically); returns the paths."""
    paths = []
    for ext in ("png", "pdf"):
        path = Path(folder) / f"{name}.{ext}"
        paths.append(atomic_write(path, lambda tmp, ext=ext: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=ext)))
    return paths


def training_curve(history: dict, title: str = ""):
    """Loss and train/test accuracy per epoch from a `cu.training.train` history."""
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
    ep = history["epoch"]
    ax_l.plot(ep, history["train_loss"], color="C0")
    ax_l.set(xlabel="epoch", ylabel="train loss (cross-entropy)", yscale="log")
    ax_a.plot(ep, [100 * a for a in history["train_acc"]], label="train (running)", color="C0")
    ax_a.plot(ep, [100 * a for a in history["test_acc"]], label="test", color="C1")
    ax_a.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100))
    ax_a.legend(loc="lower right")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def per_class_bars(acc: list[float], class_names, title: str = ""):
    """Per-class test accuracy as bars."""
    fig, ax = plt.subplots(figsize=(6, 2.8), constrained_layout=True)
    ax.bar(range(len(acc)), [100 * a for a in acc], color="C0")
    ax.set_xticks(range(len(acc)), class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right")
    ax.set(ylabel="test accuracy (%)", ylim=(0, 100), title=title)
    ax.grid(axis="y", alpha=0.3)
    return fig
