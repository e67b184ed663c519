r"""Forgetting quality from many models: the NeurIPS 2023 Machine Unlearning challenge's per-example
epsilon and forget score, and U-LiRA (Hayes et al. 2024), on logit-scaled confidences.

Both compare, example by example, the distribution of a statistic over models that *unlearned* the
example with its distribution over models *retrained* without it; a method that forgets perfectly
gives the same distribution (epsilon 0, attack at chance). Arrays are numpy, shaped
(n_models, n_examples); everything runs on a CPU.

phi = log p_y - log(1 - p_y), the logit-scaled confidence of LiRA (Carlini et al. 2022), is computed
exactly as z_y - logsumexp_{j != y} z_j from the logits z, so it stays finite when p_y rounds to 1
(the challenge adds 1e-45 inside the logs instead, which caps it near 103).

**Per-example epsilon** (checked against google-deepmind/unlearning_evaluation, metric.py,
`_get_epsilons`, `_get_single_threshold_rates`, `_get_double_threshold_rates`,
`compute_forget_score_from_confs`; our code is our own, vectorised with sorted counts):
for example i, the sample with the larger median is "positive". Two families of decision rules are
scanned, 100 thresholds per unit of phi: one threshold t ("positive if phi >= t", t over the range
of both samples), and two thresholds l <= r ("the peakier sample if l <= phi <= r": r from
min + width - 2 to max + 2 of the peakier sample, l from r - width - 2 to r - width + 2 with 400
steps, width the peakier sample's spread). For each rule with FPR and FNR over the models,
    eps = max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR), clipped at 0;
a rule with FPR = FNR = 0 (perfect separation) gives infinity, a rule with exactly one of them 0 is
discarded (too few models to estimate it); the example's epsilon is the largest, capped at 50.
An example whose smaller spread is under 1 % of the larger is given the cap (a collapsed
distribution), as in the original. Deviation: where both spreads are 0 the original divides 0 by 0
and fails; here epsilon is 0 if the two values are equal and the cap otherwise.

**Forget score**: each example earns 2^-k points for epsilon in [k/2, (k+1)/2), for buckets that
end at or below ceil(log(n_models - 1)), and 0 beyond; the score is the mean over examples (1 for
perfect forgetting). The challenge's final score multiplies it by the unlearned models' retain and
test accuracy, each relative to the retrained models' (`final_score`).

**U-LiRA** (Hayes, Shumailov, Triantafillou, Khalifa, Papernot 2024, "Inexact unlearning needs more
careful evaluations to avoid a false sense of privacy", Sec. 4): per example, Gaussians are fitted to
phi over shadow models that unlearned it and over shadow models retrained without it; a target
model's phi is scored by the log-likelihood ratio of the two; the attack tells held-out unlearned
target models from held-out retrained ones. Reported: accuracy at the ratio's natural threshold 0
and its ROC AUC (both 0.5 = ideal unlearning) and TPR at 1 % FPR.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0


def logit_scaled_confidence(logits, labels) -> np.ndarray:
    """phi = log p_y - log(1 - p_y) per row, = z_y - logsumexp_{j != y} z_j, exact and finite."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (len(z),):
        raise ValueError(f"logits must be (n, classes) and labels (n,); got {z.shape} and {y.shape}")
    if z.shape[1] < 2:
        raise ValueError("phi needs at least two classes (1 - p_y is 0 otherwise)")
    rows = np.arange(len(z))
    zy = z[rows, y]
    others = z.copy()
    others[rows, y] = -np.inf
    m = others.max(axis=1)
    lse = m + np.log(np.exp(others - m[:, None]).sum(axis=1))
    return zy - lse


def _rates_single(pos: np.ndarray, neg: np.ndarray):
    """FPR and FNR of 'positive iff phi >= t' over the challenge's threshold grid."""
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    t = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
    ps, ns = np.sort(pos), np.sort(neg)
    fnr = np.searchsorted(ps, t, side="left") / len(ps)          # pos < t
    fpr = 1 - np.searchsorted(ns, t, side="left") / len(ns)      # neg >= t
    return fpr, fnr


def _rates_double(pos: np.ndarray, neg: np.ndarray):
    """FPR and FNR of 'the peakier sample iff l <= phi <= r' over the challenge's grid."""
    if np.ptp(pos) >= np.ptp(neg):  # the peakier (smaller spread) sample is the positive one
        pos, neg = neg, pos
    width = np.ptp(pos)
    lo, hi = pos.min() + width - BUFFER, pos.max() + BUFFER
    right = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
    n_left = int(math.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT))
    offsets = np.linspace(-width - BUFFER, -width + BUFFER, n_left)
    r = np.repeat(right, n_left)
    left = (right[:, None] + offsets[None, :]).ravel()
    ps, ns = np.sort(pos), np.sort(neg)

    def inside(s):  # fraction of s with l <= s <= r
        return (np.searchsorted(s, r, side="right") - np.searchsorted(s, left, side="left")).clip(0) / len(s)

    return inside(ns), 1 - inside(ps)  # FPR, FNR


def _epsilon_from_rates(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """Per-rule epsilon: inf where FPR = FNR = 0, nan (discarded) where exactly one is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1 - delta - fpr) - np.log(fnr)
        b = np.log(1 - delta - fnr) - np.log(fpr)
        both = np.where(np.isnan(a), b, np.where(np.isnan(b), a, np.maximum(a, b)))
    eps = np.clip(both, 0, None)
    eps = np.where((fpr == 0) & (fnr == 0), np.inf, np.where((fpr == 0) | (fnr == 0), np.nan, eps))
    return eps


def _one_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float) -> float:
    sp, sn = np.ptp(pos), np.ptp(neg)
    large, small = max(sp, sn), min(sp, sn)
    if large == 0:
        return 0.0 if pos[0] == neg[0] else EPSILON_CAP
    if small / large < 0.01:
        return EPSILON_CAP
    eps = np.concatenate([_epsilon_from_rates(*_rates_double(pos, neg), delta),
                          _epsilon_from_rates(*_rates_single(pos, neg), delta)])
    eps = eps[~np.isnan(eps)]
    if len(eps) == 0:
        raise ValueError("every decision rule gave an undefined epsilon; use more models")
    return float(min(eps.max(), EPSILON_CAP))


def per_example_epsilon(phi_unlearned, phi_retrained, delta: float = DELTA) -> np.ndarray:
    """Epsilon of each example (see the module docstring) from phi of shape (n_models, n_examples)
    under unlearned and under retrained models (the two may hold different numbers of models)."""
    u, r = (np.asarray(a, dtype=np.float64) for a in (phi_unlearned, phi_retrained))
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"need (n_models, n_examples) arrays with the same examples; got {u.shape} and {r.shape}")
    if min(len(u), len(r)) < 2:
        raise ValueError("need at least 2 unlearned and 2 retrained models")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise ValueError("phi holds NaN or infinite values; compute it with logit_scaled_confidence")
    retrain_pos = np.median(r, axis=0) > np.median(u, axis=0)
    return np.array([_one_epsilon(r[:, i], u[:, i], delta) if retrain_pos[i] else _one_epsilon(u[:, i], r[:, i], delta)
                     for i in range(u.shape[1])])


def forget_score(eps, n_models: int) -> float:
    """The challenge's bucketed score: 2^-k points for epsilon in [k/2, (k+1)/2) over buckets ending at
    or below ceil(log(n_models - 1)), 0 points beyond; mean over examples (1 = perfect)."""
    eps = np.asarray(eps, dtype=np.float64)
    if n_models < 3:
        raise ValueError("the score's buckets need n_models >= 3 (their range is ceil(log(n_models - 1)))")
    n_buckets = int(math.floor(math.ceil(math.log(n_models - 1)) / 0.5))
    k = np.floor(eps / 0.5)
    points = np.where(k < n_buckets, 2.0 ** -k, 0.0)
    return float(points.mean())


def final_score(forget: float, acc_retain_unlearned: float, acc_retain_retrained: float,
                acc_test_unlearned: float, acc_test_retrained: float) -> float:
    """The challenge's score: forget score x retain-accuracy ratio x test-accuracy ratio to Retrain."""
    return forget * (acc_retain_unlearned / acc_retain_retrained) * (acc_test_unlearned / acc_test_retrained)


def _log_normal(x, mu, sd):
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)


def ulira(phi_unlearned, phi_retrained, n_shadow: int | None = None, min_sd: float = 1e-3) -> dict:
    """U-LiRA: per-example Gaussians fitted on the first `n_shadow` models of each kind (default: half),
    the remaining models attacked. Returns accuracy (threshold 0 on the log-likelihood ratio), AUC and
    TPR at 1 % FPR of telling unlearned from retrained target models, pooled over examples."""
    u, r = (np.asarray(a, dtype=np.float64) for a in (phi_unlearned, phi_retrained))
    if u.shape[1] != r.shape[1]:
        raise ValueError(f"the two arrays must hold the same examples; got {u.shape} and {r.shape}")
    n_shadow = min(len(u), len(r)) // 2 if n_shadow is None else int(n_shadow)
    if n_shadow < 2 or n_shadow >= min(len(u), len(r)):
        raise ValueError(f"n_shadow={n_shadow}: need >= 2 shadow models and >= 1 target model of each kind")
    su, sr = u[:n_shadow], r[:n_shadow]
    mu_u, sd_u = su.mean(0), np.maximum(su.std(0, ddof=1), min_sd)
    mu_r, sd_r = sr.mean(0), np.maximum(sr.std(0, ddof=1), min_sd)
    tu, tr = u[n_shadow:], r[n_shadow:]
    score = lambda x: _log_normal(x, mu_u, sd_u) - _log_normal(x, mu_r, sd_r)  # noqa: E731  >0: unlearned
    s = np.concatenate([score(tu).ravel(), score(tr).ravel()])
    truth = np.concatenate([np.ones(tu.size), np.zeros(tr.size)])
    fpr, tpr, _ = roc_curve(truth, s)
    return {"accuracy": float(((s > 0) == truth).mean()), "auc": float(roc_auc_score(truth, s)),
            "tpr_at_1pct_fpr": float(np.interp(0.01, fpr, tpr)), "n_targets": int(len(tu) + len(tr)),
            "n_shadow": n_shadow}


# --------------------------------------------------------------------------- many models

RETAIN_EVAL = 5000  # retained training samples (a seeded subset) on which each model's retain accuracy is measured


def model_statistics(model, data, split, retain_eval: int = RETAIN_EVAL) -> dict:
    """What the scores need from one model: phi on every forget sample, accuracy on a fixed seeded subset
    of `retain_eval` retained samples (all when fewer) and on the whole test set."""
    from cu.data import sample
    from cu.training import accuracy, predict

    logits = predict(model, data, "train", split.forget).float().cpu().numpy()
    phi = logit_scaled_confidence(logits, data.y_train[split.forget].cpu().numpy())
    retain = sample(split.retain, retain_eval, torch.Generator().manual_seed(0)).sort().values
    return {"phi": phi, "acc_retain": accuracy(model, data, "train", retain),
            "acc_test": accuracy(model, data, "test", split.test)}


def collect(path, n_models: int, build, data, split, log=print) -> dict:
    """Statistics (`model_statistics`) of models k = 0..n_models-1, `build(k)` making model k, kept in the npz
    file `path`: models already there are not built again, and the file is rewritten (atomically) after each
    new model, so an interrupted collection resumes. Returns {'phi': (n, n_forget), 'acc_retain': (n,),
    'acc_test': (n,), 'seconds': (n,)} for the first n_models models."""
    import time
    from pathlib import Path

    from cu.runtime import atomic_write

    path = Path(path)
    have = dict(np.load(path)) if path.exists() else {}
    rows = [{k: have[k][i] for k in have} for i in range(len(have.get("acc_test", [])))]
    if rows and np.asarray(rows[0]["phi"]).shape != (len(split.forget),):
        raise ValueError(f"{path} holds statistics of another forget set; delete it or use another cache folder")
    for k in range(len(rows), n_models):
        t0 = time.perf_counter()
        model = build(k)
        rows.append({**model_statistics(model, data, split), "seconds": time.perf_counter() - t0})
        arrays = {key: np.stack([np.asarray(r[key]) for r in rows]) for key in rows[0]}
        atomic_write(path, lambda tmp: np.savez(open(tmp, "wb"), **arrays))
        if log and (k + 1 == n_models or (k + 1) % max(1, n_models // 8) == 0):
            log(f"{path.stem}: {k + 1}/{n_models} models")
    rows = rows[:n_models]
    return {key: np.stack([np.asarray(r[key]) for r in rows]) for key in rows[0]}


def quality(unlearned: dict, retrained: dict, delta: float = DELTA) -> tuple[dict, np.ndarray]:
    """(scores, per-example epsilon) of one method from `collect` outputs; the scores: the challenge's forget score (median and
    mean per-example epsilon too) and final score (mean accuracies over models), and U-LiRA (half of each kind
    of models as shadows, the other half attacked)."""
    n = min(len(unlearned["phi"]), len(retrained["phi"]))
    eps = per_example_epsilon(unlearned["phi"][:n], retrained["phi"][:n], delta)
    forget = forget_score(eps, n)
    acc = {k: float(np.mean(unlearned[k][:n])) for k in ("acc_retain", "acc_test")}
    ref = {k: float(np.mean(retrained[k][:n])) for k in ("acc_retain", "acc_test")}
    out = {"n_models": n, "forget_score": forget, "eps_median": float(np.median(eps)), "eps_mean": float(eps.mean()),
           "final_score": final_score(forget, acc["acc_retain"], ref["acc_retain"], acc["acc_test"], ref["acc_test"]),
           "acc_retain": acc["acc_retain"], "acc_test": acc["acc_test"]}
    if n >= 4:
        u = ulira(unlearned["phi"][:n], retrained["phi"][:n])
        out.update(ulira_accuracy=u["accuracy"], ulira_auc=u["auc"], ulira_tpr_at_1fpr=u["tpr_at_1pct_fpr"])
    return out, eps


def collect_method(name: str, n_models: int, original, data, split, recipe, hparams: dict, cache_dir, log=print) -> dict:
    """`collect` for one METHODS entry run n_models times from the Original with seeds 0..n-1, for 'retrain'
    (trained from scratch on D_tr^r with the Original's recipe and seed k; not checkpointed) or for
    'original' (the Original itself each time: no unlearning). The statistics are cached under
    `cache_dir/forgetting/`, keyed by the entry's configuration (without its seed), the forget set, the
    Original's weights (Retrain: its architecture and recipe) and the code of the method and this module."""
    import dataclasses
    import hashlib
    import tempfile
    from pathlib import Path

    from cu import unlearners
    from cu.checkpoints import code_fingerprint, config_key
    from cu.experiment import base_name, fingerprint, method_overrides

    base = base_name(name)
    if base == "original":
        cfg, module = {}, "cu.forgetting"

        def build(k):
            return original
    else:
        def overrides(k):
            extra = {"cache_dir": None} if base == "retrain" else {}
            return {**method_overrides(name, hparams, recipe, None, k), "seed": k, **extra}

        def build(k):
            return unlearners.run(base, original, data, split, **overrides(k))[0]

        cfg = {k: v for k, v in dataclasses.asdict(unlearners.make_config(base, **overrides(0))).items() if k != "seed"}
        module = unlearners.get(base).fn.__module__
    key = {"dataset": data.name, "method": name, "config": cfg, "task": split.task,
           "forget": hashlib.sha256(split.forget.numpy().tobytes()).hexdigest()[:16],
           "original": dict(original.arch) if base == "retrain" else fingerprint(original),
           "code": code_fingerprint("cu.forgetting", module)}
    folder = Path(cache_dir) / "forgetting" if cache_dir is not None else Path(tempfile.mkdtemp())
    path = folder / f"{data.name}-{name.replace(':', '-')}-{config_key(key)}.npz"
    return collect(path, n_models, build, data, split, log=log)


def compare_with_mia(scores, mia_csv, ident: dict, attack: tuple[str, str] = ("softmax_sorted", "svc")):
    """Each method's forget score next to notebook 04's paper attack on the same seed: its member rate on
    D_tr^u, the gap to Retrain's rate (what the MIA calls forgetting: small is good), and both ranks.
    Returns None (and says why) when mia.csv lacks that seed."""
    from pathlib import Path

    import pandas as pd

    path = Path(mia_csv)
    if not path.exists():
        print(f"{path} does not exist: run notebook 04 for this profile and seed to compare")
        return None
    mia = pd.read_csv(path)
    sel = mia[(mia.dataset == ident["dataset"]) & (mia.model == ident["model"]) & (mia.width == ident["width"])
              & (mia.seed == ident["seed"]) & (mia.feature == attack[0]) & (mia.classifier == attack[1])]
    if "retrain" not in set(sel.method):
        print(f"{path} has no paper attack on Retrain for seed {ident['seed']}: run notebook 04 to compare")
        return None
    rate = sel.set_index("method")["mia_forget"]
    out = pd.DataFrame({"forget_score": scores["forget_score"]}).join(rate.rename("mia_forget_%"), how="inner")
    out["mia_gap_to_retrain_pt"] = (out["mia_forget_%"] - rate["retrain"]).abs()
    out["rank_forget_score"] = out["forget_score"].rank(ascending=False, method="min").astype(int)
    out["rank_mia_gap"] = out["mia_gap_to_retrain_pt"].rank(method="min").astype(int)
    return out.round(3)
