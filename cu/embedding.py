"""Embeddings z = E(x) of forget and retain samples, and their 2-D projection (Figure 1).

The paper's Figure 1 is a sketch of the normalised representation space: forget samples
(circles) and retain samples (squares) coloured by class; contrastive unlearning pushes each
forget embedding away from its own class and towards the others. `embedding_sample` gathers the
embeddings and predicted classes that show this on a real model, `own_centre_share` measures it in
the full z, and `project_2d` maps z to the plane (t-SNE or PCA, scikit-learn) for
`cu.plots.embedding_panels`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn

from cu.data import DeviceData, Split, sample
from cu.runtime import as_int
from cu.training import predict

PROJECTIONS = ("tsne", "pca")


class Embedding(NamedTuple):
    """One model's view of a fixed set of training samples, forget samples first.

    z: N x 128 embeddings (L2-normalised); y: N true labels; is_forget: N booleans (True for D_tr^u);
    pred: N classes the model predicts (argmax of its logits). Unpacks as `z, y, is_forget, pred`."""
    z: np.ndarray
    y: np.ndarray
    is_forget: np.ndarray
    pred: np.ndarray


def embedding_sample(model: nn.Module, data: DeviceData, split: Split, n_retain: int = 500,
                     n_forget: int = 500, seed: int = 0) -> Embedding:
    """`Embedding(z, y, is_forget, pred)` of up to `n_forget` samples of D_tr^u (in index order) followed by
    up to `n_retain` of D_tr^r (in index order). Which samples are drawn depends only on `split`, the two
    sizes and `seed`, never on the model, so every model given the same arguments embeds the same samples;
    the retain draw does not depend on `n_forget` (pass n_forget < |D_tr^u| to show fewer forget samples)."""
    gen = torch.Generator().manual_seed(as_int(seed, "seed"))
    forget = sample(split.forget, as_int(n_forget, "n_forget"), gen).sort().values
    retain = sample(split.retain, as_int(n_retain, "n_retain"), gen).sort().values
    idx = torch.cat([forget, retain])
    z = predict(model, data, "train", idx, embed=True).cpu().numpy()
    pred = predict(model, data, "train", idx).argmax(1).cpu().numpy()
    y = data.y_train[idx.to(data.device)].cpu().numpy()
    is_forget = np.r_[np.ones(len(forget), bool), np.zeros(len(retain), bool)]
    return Embedding(z, y, is_forget, pred)


def own_centre_share(z: np.ndarray, y: np.ndarray, is_forget: np.ndarray) -> float:
    """Share in [0, 1] of the forget samples whose nearest class centre is the centre of their own label.

    The centre of class c is the mean of the L2-normalised rows of `z` of the retain samples
    (is_forget False) labelled c, L2-normalised again. Each forget sample's nearest centre is the one of
    highest cosine similarity with its z, in the full dimension of z (not a 2-D projection; ties go to the
    lower class). nan when there are no forget samples; ValueError when a forget sample's class has no
    retain sample (then it has no centre)."""
    z, y, forget = np.asarray(z, np.float64), np.asarray(y), np.asarray(is_forget, bool)
    if not forget.any():
        return float("nan")
    u = z / np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
    classes = np.unique(y[~forget])
    missing = sorted(set(np.unique(y[forget]).tolist()) - set(classes.tolist()))
    if missing:
        raise ValueError(f"forget samples of class(es) {missing} have no retain sample to form a class centre; "
                         f"draw more retain samples (embedding_sample's n_retain)")
    centres = np.stack([u[~forget & (y == c)].mean(0) for c in classes])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True).clip(1e-12)
    nearest = classes[(u[forget] @ centres.T).argmax(1)]
    return float((nearest == y[forget]).mean())


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
