"""Embeddings z = E(x) of forget and retain samples, and their 2-D projection (Figure 1).

The paper's Figure 1 is a sketch of the normalised representation space: forget samples
(circles) and retain samples (squares) coloured by class; contrastive unlearning pushes each
forget embedding away from its own class and towards the others. `embedding_sample` gathers the
embeddings that show this on a real model, `project_2d` maps them to the plane (t-SNE or PCA,
scikit-learn) for `cu.plots.embedding_panels`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from cu.data import DeviceData, Split, sample
from cu.runtime import as_int
from cu.training import predict

PROJECTIONS = ("tsne", "pca")


def embedding_sample(model: nn.Module, data: DeviceData, split: Split, n_retain: int = 500,
                     n_forget: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, y, is_forget) for up to `n_forget` samples of D_tr^u and `n_retain` of D_tr^r, drawn with
    `seed` (the same samples for every model given the same split and seed); z is N x 128."""
    gen = torch.Generator().manual_seed(as_int(seed, "seed"))
    forget = sample(split.forget, as_int(n_forget, "n_forget"), gen).sort().values
    retain = sample(split.retain, as_int(n_retain, "n_retain"), gen).sort().values
    idx = torch.cat([forget, retain])
    z = predict(model, data, "train", idx, embed=True).cpu().numpy()
    y = data.y_train[idx.to(data.device)].cpu().numpy()
    is_forget = np.r_[np.ones(len(forget), bool), np.zeros(len(retain), bool)]
    return z, y, is_forget


def project_2d(z: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """N x 2 coordinates of the rows of `z`: t-SNE (perplexity min(30, (N-1)/3), PCA initialisation,
    cosine distance, which suits the L2-normalised z) or PCA. Seeded, so deterministic on one machine."""
    z = np.asarray(z, dtype=np.float64)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        if len(z) < 5:
            raise ValueError(f"t-SNE needs at least 5 points, got {len(z)}; use method='pca'")
        perplexity = min(30.0, (len(z) - 1) / 3)
        return TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine",
                    random_state=seed).fit_transform(z)
    raise ValueError(f"unknown projection {method!r}; valid: {', '.join(PROJECTIONS)}")
