r"""Membership inference attack (MIA) for unlearning verification (the paper, Sec. 5.1 and Table 6).

The adversary has full access to the unlearned model F' and to the data (an administrator
auditing its own unlearning). Following the paper:

    D^M  = n_train members sampled from D_tr^r            (label 1)
    D^N  = n_train non-members sampled from D_ts           (label 0)
    attack A is trained on {phi(F'(x), y) : x in D^M u D^N}
    member-prediction rate on S = |{x in S : A(phi(F'(x), y)) = member}| / |S|

reported on S = D_tr^u (`mia_forget`: lower = better forgetting; after Retrain the forget samples
are true non-members) and on S = n_eval held-out members of D_tr^r that A never saw
(`mia_retain`: the attack's power, its true-positive rate). We add what the paper leaves out:
`mia_test`, the rate on n_eval held-out non-members of D_ts (the false-positive rate, the level
a perfectly forgotten sample should sit at), and `mia_auc`, the ROC AUC of A's score on the
held-out members against the held-out non-members (0.5 = no attack power). All rates are fractions.

Features phi (one per attack, `feature=`), with p = softmax(F'(x)) over C classes and y the true label:

    softmax_sorted     p sorted in decreasing order (C values): the model's output with the
                       class identity removed, so one attack serves every class (Salem et al. 2019,
                       "ML-Leaks"); the paper feeds "the output of the unlearned model".
    loss               -log p_y  (cross-entropy with the true label)
    confidence         p_y
    entropy            -sum_i p_i log p_i
    modified_entropy   -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
                       (Song & Mittal 2021, "Systematic evaluation of privacy risks of machine
                       learning models", Eq. 7). Computed exactly: log(1 - p_i) of the largest p_i
                       is log(sum_{j != i} p_j) from the logits, so it stays finite when p_i
                       rounds to 1. SalUn's `evaluation/SVC_MIA.py` (and its copies) writes
                       log p where log(1 - p) belongs and overwrites whole columns; not repeated here.

Attack classifier (`classifier=`): 'svc' (default) is SalUn's SVC(C=3, kernel='rbf',
gamma='auto'), the attack most unlearning papers run; 'logistic' is a LogisticRegression (on a
scalar feature, a learned threshold: the loss attack of Yeom et al. 2018). The paper names no
classifier. Both see the features after a per-column quantile transform to a standard normal
(scikit-learn's QuantileTransformer, fitted on the attack's training set). SalUn feeds raw
values; with them, or after plain standardisation, heavy-tailed features (a loss that is ~0 for
almost every sample and large for a few) collapse into one point for the RBF kernel, and on the
digits profile the SVC then called ~100 % of every set members. The transform is monotone per
column, so a threshold attack on one feature is unchanged by it.

Sampling is balanced and seeded: one permutation of D_tr^r gives the n_train training members
and then the n_eval held-out members; one permutation of D_ts gives the non-members likewise.
D_ts is the whole test set (`split.test`), also for a class split, where the paper runs no MIA.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer
from sklearn.svm import SVC

from cu.data import DeviceData, Split
from cu.runtime import as_int
from cu.training import predict

FEATURES = ("softmax_sorted", "loss", "confidence", "entropy", "modified_entropy")
CLASSIFIERS = ("svc", "logistic")


# --------------------------------------------------------------------------- features

def features(logits, labels, feature: str = "softmax_sorted") -> np.ndarray:
    """The attack's input phi(F'(x), y) for each row of `logits` (N x C) with true `labels` (N).

    A pure function of the outputs (tensors or arrays); computed in float64. Returns an
    (N, C) array for 'softmax_sorted' and (N, 1) for the scalar features (see the module docstring).
    """
    if feature not in FEATURES:
        raise ValueError(f"unknown MIA feature {feature!r}; valid features: {', '.join(FEATURES)}")
    z = torch.as_tensor(logits).detach().cpu().to(torch.float64)
    y = torch.as_tensor(labels).detach().cpu().long()
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"expected logits (N, C) and labels (N,); got {tuple(z.shape)} and {tuple(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must lie in 0..{z.shape[1] - 1}; got {int(y.min())}..{int(y.max())}")
    logp = torch.log_softmax(z, dim=1)
    p = logp.exp()
    logp_y = logp.gather(1, y[:, None])
    if feature == "softmax_sorted":
        out = p.sort(dim=1, descending=True).values
    elif feature == "loss":
        out = -logp_y
    elif feature == "confidence":
        out = logp_y.exp()
    elif feature == "entropy":
        out = -(p * logp).sum(1, keepdim=True)
    else:  # modified_entropy
        out = -(1 - logp_y.exp()) * logp_y - (p * _log1m_softmax(z, p)).scatter(1, y[:, None], 0.0).sum(1, keepdim=True)
    return out.numpy()


def _log1m_softmax(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """log(1 - p_i) for every class: log1p(-p_i), except for each row's largest p_i (the only one
    that can be near 1), where it is logsumexp_{j != i} z_j - logsumexp_j z_j."""
    out = torch.log1p(-p)
    top = z.argmax(1, keepdim=True)
    others = z.scatter(1, top, float("-inf"))
    out.scatter_(1, top, (torch.logsumexp(others, 1) - torch.logsumexp(z, 1))[:, None])
    return out


# --------------------------------------------------------------------------- sampling

@dataclass(frozen=True)
class AttackSets:
    """Disjoint index sets for one attack: training members/non-members and held-out ones."""

    member_train: torch.Tensor     # into the training set, from D_tr^r
    nonmember_train: torch.Tensor  # into the test set, from D_ts
    member_eval: torch.Tensor      # held-out D_tr^r members (attack power)
    nonmember_eval: torch.Tensor   # held-out D_ts non-members (false-positive rate, AUC)


def attack_sets(split: Split, n_train: int | None = None, n_eval: int | None = None, seed: int = 0) -> AttackSets:
    """Balanced, seeded samples: n_train members + n_train non-members to train the attack, and
    n_eval of each held out. Defaults: half of min(|D_tr^r|, |D_ts|) to train, the rest to evaluate
    (on digits: 180 + 180 of each, since |D_ts| = 360)."""
    retain, test = split.retain, split.test
    avail = min(len(retain), len(test))
    n_train = avail // 2 if n_train is None else as_int(n_train, "n_train")
    n_eval = avail - n_train if n_eval is None else as_int(n_eval, "n_eval")
    if n_train < 1 or n_eval < 1 or n_train + n_eval > avail:
        raise ValueError(f"n_train={n_train} and n_eval={n_eval} need n_train, n_eval >= 1 and n_train + n_eval <= "
                         f"min(|D_tr^r|, |D_ts|) = {avail} (members and non-members are drawn without replacement "
                         f"in equal numbers); pass smaller sizes or None for the defaults")
    seed = as_int(seed, "seed")
    perm_in = retain[torch.randperm(len(retain), generator=torch.Generator().manual_seed(seed))]
    perm_out = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(seed + 1))]
    return AttackSets(perm_in[:n_train], perm_out[:n_train],
                      perm_in[n_train:n_train + n_eval], perm_out[n_train:n_train + n_eval])


# --------------------------------------------------------------------------- the attack on features

def make_classifier(classifier: str = "svc", seed: int = 0, n_samples: int = 1000):
    """An unfitted scikit-learn pipeline: the quantile transform (at most `n_samples` quantiles,
    the size of the set it will be fitted on), then the attack model."""
    if classifier == "svc":
        clf = SVC(C=3.0, kernel="rbf", gamma="auto")  # SalUn's SVC_MIA; deterministic (no probability=True)
    elif classifier == "logistic":
        clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed)
    else:
        raise ValueError(f"unknown attack classifier {classifier!r}; valid: {', '.join(CLASSIFIERS)}")
    scale = QuantileTransformer(n_quantiles=max(2, min(1000, n_samples)), output_distribution="normal",
                                subsample=10**9, random_state=seed)
    return make_pipeline(scale, clf)


def attack(members: np.ndarray, nonmembers: np.ndarray, forget: np.ndarray, members_eval: np.ndarray,
           nonmembers_eval: np.ndarray, classifier: str = "svc", seed: int = 0) -> dict[str, float]:
    """Train the attack on feature arrays of members (label 1) and non-members (label 0) and
    return the member-prediction rates on `forget`, `members_eval` and `nonmembers_eval` and the AUC
    of its score on held-out members vs held-out non-members (all fractions)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (members, nonmembers, forget, members_eval, nonmembers_eval)]
    arrays = [a[:, None] if a.ndim == 1 else a for a in arrays]
    members, nonmembers, forget, members_eval, nonmembers_eval = arrays
    for name, a in zip(("members", "nonmembers", "forget", "members_eval", "nonmembers_eval"), arrays):
        if not np.isfinite(a).all():
            raise ValueError(f"the {name} features hold NaN or infinite values; check the model's outputs")
        if len(a) == 0:
            raise ValueError(f"the {name} feature array is empty; every set needs at least one sample")
    clf = make_classifier(classifier, seed, len(members) + len(nonmembers))
    clf.fit(np.vstack([members, nonmembers]), np.r_[np.ones(len(members)), np.zeros(len(nonmembers))])
    rate = lambda a: float(clf.predict(a).mean())  # noqa: E731
    scores = np.r_[clf.decision_function(members_eval), clf.decision_function(nonmembers_eval)]
    truth = np.r_[np.ones(len(members_eval)), np.zeros(len(nonmembers_eval))]
    return {"mia_forget": rate(forget), "mia_retain": rate(members_eval), "mia_test": rate(nonmembers_eval),
            "mia_auc": float(roc_auc_score(truth, scores))}


# --------------------------------------------------------------------------- the attack on a model

@dataclass(frozen=True)
class MIAResult:
    """One attack on one model. Rates are fractions in [0, 1]."""

    mia_forget: float   # member-prediction rate on D_tr^u (lower = better forgetting)
    mia_retain: float   # member-prediction rate on held-out D_tr^r members (attack power, TPR)
    mia_auc: float      # ROC AUC, held-out members vs held-out non-members (0.5 = powerless)
    mia_test: float     # member-prediction rate on held-out D_ts non-members (FPR)
    feature: str
    classifier: str
    n_train: int        # members (= non-members) the attack was trained on
    n_eval: int         # held-out members (= non-members)
    n_forget: int       # |D_tr^u|
    seed: int

    def percent(self) -> dict:
        """The result as a dict with the four rates in percent (for CSV rows)."""
        d = asdict(self)
        for k in ("mia_forget", "mia_retain", "mia_auc", "mia_test"):
            d[k] = 100 * d[k]
        return d


def mia(model: nn.Module, data: DeviceData, split: Split, feature: str = "softmax_sorted",
        n_train: int | None = None, n_eval: int | None = None, classifier: str = "svc", seed: int = 0) -> MIAResult:
    """Attack `model` (the Original, Retrain or an unlearned model) as in the paper (see the module
    docstring); sizes as in `attack_sets`. The same seed gives the same attack sets for every model."""
    grid = mia_grid({"model": model}, data, split, (feature,), (classifier,), n_train, n_eval, seed)
    return grid[feature, classifier]["model"]


def mia_grid(models: dict[str, nn.Module], data: DeviceData, split: Split, feature_names: tuple[str, ...] = FEATURES,
             classifiers: tuple[str, ...] = ("svc",), n_train: int | None = None, n_eval: int | None = None,
             seed: int = 0) -> dict[tuple[str, str], dict[str, MIAResult]]:
    """`mia` for every model x feature x classifier, with one forward pass per model and the same
    attack sets for all: {(feature, classifier): {model name: MIAResult}}."""
    if len(split.forget) == 0:
        raise ValueError("the split forgets no training samples: nothing to test the attack on")
    for f in feature_names:  # fail before any forward pass
        if f not in FEATURES:
            raise ValueError(f"unknown MIA feature {f!r}; valid features: {', '.join(FEATURES)}")
    for c in classifiers:
        if c not in CLASSIFIERS:
            raise ValueError(f"unknown attack classifier {c!r}; valid: {', '.join(CLASSIFIERS)}")
    sets = attack_sets(split, n_train, n_eval, seed)
    parts = {"members": ("train", sets.member_train), "nonmembers": ("test", sets.nonmember_train),
             "forget": ("train", split.forget), "members_eval": ("train", sets.member_eval),
             "nonmembers_eval": ("test", sets.nonmember_eval)}
    grid: dict[tuple[str, str], dict[str, MIAResult]] = {(f, c): {} for f in feature_names for c in classifiers}
    for name, model in models.items():
        outputs = {k: (predict(model, data, part, idx), data.subset(part, idx)[1]) for k, (part, idx) in parts.items()}
        for f in feature_names:
            phi = {k: features(logits, y, f) for k, (logits, y) in outputs.items()}
            for c in classifiers:
                rates = attack(**phi, classifier=c, seed=seed)
                grid[f, c][name] = MIAResult(**rates, feature=f, classifier=c, n_train=len(sets.member_train),
                                             n_eval=len(sets.member_eval), n_forget=len(split.forget), seed=seed)
    return grid


def mia_summary(grid: dict[tuple[str, str], dict[str, MIAResult]], metric: str = "mia_forget",
                decimals: int = 1) -> pd.DataFrame:
    """One `metric` (in percent) of a `mia_grid`: rows 'feature / classifier', columns models."""
    return pd.DataFrame({f"{f} / {c}": {name: 100 * getattr(r, metric) for name, r in res.items()}
                         for (f, c), res in grid.items()}).T.round(decimals)


def mia_table(results: dict[str, MIAResult], decimals: int = 1) -> pd.DataFrame:
    """Table 6's layout: rows D_tr^u and D_tr^r (member-prediction rates), then the held-out D_ts
    rate and the AUC, in percent; one column per model (in the order given)."""
    rows = {"D_tr^u (forget)": "mia_forget", "D_tr^r (held-out members)": "mia_retain",
            "D_ts (held-out non-members)": "mia_test", "AUC members vs non-members": "mia_auc"}
    table = pd.DataFrame({name: [100 * getattr(r, k) for k in rows.values()] for name, r in results.items()},
                         index=list(rows))
    if "retrain" in results:  # what the attack calls forgetting: a D_tr^u rate at Retrain's
        table.loc["D_tr^u gap to Retrain (pt)"] = table.loc["D_tr^u (forget)"] - table.loc["D_tr^u (forget)", "retrain"]
    return table.round(decimals)


def warnings(results: dict[str, MIAResult], rows: list[dict] | None = None, min_auc: float = 0.55,
             collapse_pt: float = 10.0) -> list[str]:
    """What a reader of an MIA table must know: the attack has no power where the Original's AUC is at
    most `min_auc` (its rates then say nothing about forgetting), and a method whose test accuracy fell
    more than `collapse_pt` points under Retrain's has a low member rate because it broke the model, not
    because it forgot. `rows` are `cu.experiment.run_methods` rows (for the accuracies). Printed and returned."""
    out = []
    if "original" in results and results["original"].mia_auc <= min_auc:
        out.append(f"WARNING: the attack has no power here (the Original's AUC {100 * results['original'].mia_auc:.1f} % "
                   f"<= {100 * min_auc:.0f} %): its member rates say nothing about forgetting")
    acc = {r["method"]: r.get("acc_test", r.get("acc_test_retain")) for r in rows or []}
    if "retrain" in acc:
        for name, a in acc.items():
            if name not in ("original", "retrain") and a is not None and 100 * (acc["retrain"] - a) > collapse_pt:
                out.append(f"WARNING: {name}'s test accuracy ({100 * a:.1f} %) is {100 * (acc['retrain'] - a):.1f} pt "
                           f"under Retrain's: its low member rate is a broken model, not forgetting")
    for line in out:
        print(line)
    if not out:
        print("no warnings: the attack has power and no method's accuracy collapsed")
    return out
