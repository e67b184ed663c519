"""The challenge's epsilon and forget score and U-LiRA, on known answers and a brute-force reference."""
import math

import numpy as np
import pytest

from cu import forgetting as F


def test_phi_is_exact_and_finite_where_p_y_rounds_to_one():
    z = np.array([[2.0, 0.5, -1.0], [1000.0, 0.0, 0.0]])
    p = np.exp(z[0]) / np.exp(z[0]).sum()
    phi = F.logit_scaled_confidence(z, [0, 0])
    assert phi[0] == pytest.approx(math.log(p[0]) - math.log(1 - p[0]), rel=1e-12)
    assert phi[1] == pytest.approx(1000 - math.log(2), rel=1e-12) and np.isfinite(phi).all()


def _brute_epsilon(pos, neg, delta=F.DELTA):
    """The definition, threshold by threshold (slow): the reference for the vectorised code."""
    best = []
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    rules = [lambda x, t=t: x >= t for t in np.linspace(lo, hi, int(math.ceil((hi - lo) * 100)))]
    p, n = (pos, neg) if np.ptp(pos) < np.ptp(neg) else (neg, pos)
    w = np.ptp(p)
    for r in np.linspace(p.min() + w - 2, p.max() + 2, int(math.ceil((p.max() + 2 - (p.min() + w - 2)) * 100))):
        for l in np.linspace(r - w - 2, r - w + 2, 400):
            rules.append((lambda x, l=l, r=r: (l <= x) & (x <= r), p, n))
    for rule in rules:
        if isinstance(rule, tuple):
            rule, pp, nn_ = rule
        else:
            pp, nn_ = pos, neg
        fnr, fpr = 1 - rule(pp).mean(), rule(nn_).mean()
        if fpr == 0 and fnr == 0:
            best.append(math.inf)
        elif fpr == 0 or fnr == 0:
            continue
        else:
            terms = [t for t in (math.log(1 - delta - fpr) - math.log(fnr) if fpr < 1 - delta else math.nan,
                                 math.log(1 - delta - fnr) - math.log(fpr) if fnr < 1 - delta else math.nan)
                     if not math.isnan(t)]
            if terms:
                best.append(max(0.0, max(terms)))
    return min(max(best), F.EPSILON_CAP)


def test_epsilon_matches_the_definition_threshold_by_threshold():
    rng = np.random.default_rng(0)
    u = rng.normal(0, 1, (8, 3)) + np.array([0.0, 0.7, 2.5])
    r = rng.normal(0, 1.3, (8, 3))
    eps = F.per_example_epsilon(u, r)
    for i in range(3):
        pos, neg = (r[:, i], u[:, i]) if np.median(r[:, i]) > np.median(u[:, i]) else (u[:, i], r[:, i])
        assert eps[i] == pytest.approx(_brute_epsilon(pos, neg), abs=1e-9)
    assert eps[2] > eps[0]


def test_same_distribution_scores_in_the_low_buckets_and_separated_zero():
    rng = np.random.default_rng(1)
    n_models, n_ex = 64, 40
    same = F.per_example_epsilon(rng.normal(0, 1, (n_models, n_ex)), rng.normal(0, 1, (n_models, n_ex)))
    # not 0: the max over thresholds finds ratios of small tail counts (e.g. log 5 for 5 vs 1 models), the
    # challenge's definition; identical distributions sit in the low buckets, separated ones past the last
    assert np.median(same) < 2.5 and F.forget_score(same, n_models) > 0.1
    apart = F.per_example_epsilon(rng.normal(12, 1, (n_models, n_ex)), rng.normal(0, 1, (n_models, n_ex)))
    assert (apart >= math.ceil(math.log(n_models - 1))).all() and F.forget_score(apart, n_models) == 0


def test_collapsed_distribution_gets_the_cap_and_constant_equal_ones_zero():
    rng = np.random.default_rng(2)
    collapsed = np.full((10, 1), 3.0) + rng.normal(0, 1e-4, (10, 1))
    assert F.per_example_epsilon(collapsed, rng.normal(3, 1, (10, 1)))[0] == F.EPSILON_CAP
    assert F.per_example_epsilon(np.ones((5, 1)), np.ones((5, 1)))[0] == 0


def test_forget_score_buckets():
    # n_models 21: buckets up to ceil(log 20) = 3, i.e. [0, .5), [.5, 1), ..., [2.5, 3): 1, 1/2, ..., 1/32
    assert F.forget_score([0.0, 0.6, 1.2, 2.9, 3.0], 21) == pytest.approx((1 + 0.5 + 0.25 + 1 / 32 + 0) / 5)
    assert F.final_score(0.5, 0.9, 1.0, 0.8, 0.8) == pytest.approx(0.45)


def test_ulira_at_chance_for_equal_distributions_and_strong_when_apart():
    rng = np.random.default_rng(3)
    shift = rng.normal(0, 3, 200)  # examples differ, models of both kinds agree per example
    same = F.ulira(rng.normal(shift, 1, (16, 200)), rng.normal(shift, 1, (16, 200)))
    assert abs(same["accuracy"] - 0.5) < 0.05 and abs(same["auc"] - 0.5) < 0.05
    apart = F.ulira(rng.normal(shift + 3, 1, (16, 200)), rng.normal(shift, 1, (16, 200)))
    assert apart["accuracy"] > 0.9 and apart["auc"] > 0.95 and apart["tpr_at_1pct_fpr"] > 0.3


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="same examples"):
        F.per_example_epsilon(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        F.per_example_epsilon(np.full((3, 1), np.inf), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="n_models >= 3"):
        F.forget_score([0.0], 2)


def test_collect_keeps_each_models_statistics_and_resumes(data, original, tmp_path):
    from cu.data import random_split

    split = random_split(data, 20, seed=0)
    built = []

    def build(k):
        built.append(k)
        return original

    path = tmp_path / "stats.npz"
    first = F.collect(path, 3, build, data, split, log=None)
    assert built == [0, 1, 2] and first["phi"].shape == (3, 20) and first["acc_test"].shape == (3,)
    more = F.collect(path, 5, build, data, split, log=None)  # only the two new models are built
    assert built == [0, 1, 2, 3, 4] and np.array_equal(more["phi"][:3], first["phi"])
    assert F.collect(path, 2, build, data, split, log=None)["phi"].shape == (2, 20)
    with pytest.raises(ValueError, match="another forget set"):
        F.collect(path, 6, build, data, random_split(data, 10, seed=0), log=None)


def test_the_same_model_n_times_scores_zero_and_forget_scores_follow_the_metric():
    rng = np.random.default_rng(0)
    n, m = 8, 30
    retrained = {"phi": rng.normal(0, 1, (n, m)), "acc_retain": np.full(n, 0.9), "acc_test": np.full(n, 0.8)}
    same = {"phi": np.tile(rng.normal(0, 1, m), (n, 1)), "acc_retain": np.full(n, 0.9), "acc_test": np.full(n, 0.8)}
    scores, eps = F.quality(same, retrained)
    assert scores["forget_score"] == 0 and (eps == F.EPSILON_CAP).all()  # a collapsed distribution
    scores, eps = F.quality({**retrained, "phi": rng.normal(0, 1, (n, m))}, retrained)
    assert scores["forget_score"] > 0 and scores["final_score"] == pytest.approx(scores["forget_score"])
    assert 0 <= scores["ulira_auc"] <= 1 and scores["n_models"] == n
