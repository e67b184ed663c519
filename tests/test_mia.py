"""The membership inference attack: features against hand computations, the attack on synthetic
outputs that are easy (and impossible) to separate, balanced seeded sampling, and a real model."""
import math

import numpy as np
import pytest
import torch

from cu.data import class_split, random_split
from cu.mia import FEATURES, MIAResult, attack, attack_sets, features, mia, mia_grid, mia_summary, mia_table
from cu.models import build_model

P = [0.7, 0.2, 0.1]
LOGITS = torch.log(torch.tensor([P, P]))  # two rows with softmax = P
LABELS = torch.tensor([0, 1])


def test_softmax_sorted_is_the_sorted_probability_vector():
    logits = torch.log(torch.tensor([[0.1, 0.7, 0.2]]))
    np.testing.assert_allclose(features(logits, torch.tensor([2]), "softmax_sorted"), [[0.7, 0.2, 0.1]], atol=1e-12)


def test_scalar_features_by_hand():
    conf = features(LOGITS, LABELS, "confidence")
    loss = features(LOGITS, LABELS, "loss")
    ent = features(LOGITS, LABELS, "entropy")
    assert conf.shape == loss.shape == ent.shape == (2, 1)
    np.testing.assert_allclose(conf[:, 0], [0.7, 0.2], atol=1e-12)
    np.testing.assert_allclose(loss[:, 0], [-math.log(0.7), -math.log(0.2)], atol=1e-12)
    h = -sum(p * math.log(p) for p in P)  # 0.8018185...
    np.testing.assert_allclose(ent[:, 0], [h, h], atol=1e-12)


def test_modified_entropy_by_hand():
    # Song & Mittal: -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    y0 = -(0.3 * math.log(0.7)) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)  # 0.16217
    y1 = -(0.8 * math.log(0.2)) - 0.7 * math.log(0.3) - 0.1 * math.log(0.9)  # 2.14087
    np.testing.assert_allclose(features(LOGITS, LABELS, "modified_entropy")[:, 0], [y0, y1], atol=1e-12)


def test_modified_entropy_stays_finite_and_exact_for_a_confident_wrong_prediction():
    # p_0 = 1 / (1 + 2e^-50) rounds to 1 in floating point, so log1p(-p_0) would be -inf.
    # Exact: log p_1 = -50 - log(1 + 2e^-50); log(1 - p_0) = log 2 - 50 - log(1 + 2e^-50).
    v = features(torch.tensor([[50.0, 0.0, 0.0]]), torch.tensor([1]), "modified_entropy")[0, 0]
    assert v == pytest.approx(50 + (50 - math.log(2)), rel=1e-9)
    # a confident correct prediction has almost no modified entropy
    assert features(torch.tensor([[50.0, 0.0, 0.0]]), torch.tensor([0]), "modified_entropy")[0, 0] < 1e-15


def test_features_accept_numpy_and_reject_bad_input():
    a = features(LOGITS.numpy(), LABELS.numpy(), "loss")
    np.testing.assert_allclose(a, features(LOGITS, LABELS, "loss"))
    with pytest.raises(ValueError, match="valid features"):
        features(LOGITS, LABELS, "margin")
    with pytest.raises(ValueError, match="labels must lie"):
        features(LOGITS, torch.tensor([0, 3]), "loss")


def _synthetic(rng, n, confident):
    """Logits of a 10-class model: `confident` rows have a margin of about 8 on the true label."""
    y = rng.integers(0, 10, n)
    z = rng.normal(0, 1, (n, 10))
    if confident:
        z[np.arange(n), y] += 8
    return z, y


@pytest.mark.parametrize("feature", FEATURES)
@pytest.mark.parametrize("classifier", ["svc", "logistic"])
def test_attack_separates_confident_members_from_unsure_non_members(feature, classifier):
    rng = np.random.default_rng(0)
    phi = lambda confident, n=200: features(*_synthetic(rng, n, confident), feature)  # noqa: E731
    r = attack(phi(True), phi(False), phi(True, 100), phi(True), phi(False), classifier=classifier)
    assert r["mia_retain"] > 0.95 and r["mia_forget"] > 0.95
    assert r["mia_test"] < 0.05 and r["mia_auc"] > 0.98
    # forget samples that look like non-members are not predicted members
    r2 = attack(phi(True), phi(False), phi(False, 100), phi(True), phi(False), classifier=classifier)
    assert r2["mia_forget"] < 0.05


@pytest.mark.parametrize("feature", ["softmax_sorted", "modified_entropy"])
def test_attack_has_no_power_when_members_and_non_members_look_alike(feature):
    rng = np.random.default_rng(1)
    phi = lambda n=500: features(*_synthetic(rng, n, False), feature)  # noqa: E731
    r = attack(phi(), phi(), phi(200), phi(), phi())
    assert r["mia_auc"] == pytest.approx(0.5, abs=0.08)
    # with no signal, held-out members and non-members are called members at about the same rate
    assert abs(r["mia_retain"] - r["mia_test"]) < 0.1


def test_attack_rejects_non_finite_features():
    ok = np.zeros((4, 1))
    with pytest.raises(ValueError, match="forget"):
        attack(ok, ok + 1, np.full((2, 1), np.nan), ok, ok)


def test_attack_sets_are_balanced_disjoint_and_seeded(digits):
    split = random_split(digits, 100, seed=0)
    s = attack_sets(split, n_train=120, n_eval=60, seed=3)
    assert len(s.member_train) == len(s.nonmember_train) == 120
    assert len(s.member_eval) == len(s.nonmember_eval) == 60
    retain, test = set(split.retain.tolist()), set(split.test.tolist())
    assert set(s.member_train.tolist()) | set(s.member_eval.tolist()) <= retain
    assert set(s.nonmember_train.tolist()) | set(s.nonmember_eval.tolist()) <= test
    assert not set(s.member_train.tolist()) & set(s.member_eval.tolist())
    assert not set(s.nonmember_train.tolist()) & set(s.nonmember_eval.tolist())
    assert not set(s.member_train.tolist()) & set(split.forget.tolist())
    again = attack_sets(split, n_train=120, n_eval=60, seed=3)
    assert torch.equal(s.member_train, again.member_train) and torch.equal(s.nonmember_eval, again.nonmember_eval)
    other = attack_sets(split, n_train=120, n_eval=60, seed=4)
    assert not torch.equal(s.member_train, other.member_train)
    # defaults: half of min(|D_tr^r|, |D_ts|) = 360 for training, the rest held out
    d = attack_sets(split)
    assert len(d.member_train) == len(d.nonmember_train) == 180 and len(d.member_eval) == 180
    with pytest.raises(ValueError, match="n_train"):
        attack_sets(split, n_train=300, n_eval=100)


def test_mia_on_a_trained_model(data, original):
    split = random_split(data, 100, seed=0)
    r = mia(original, data, split, feature="loss", seed=0)
    assert isinstance(r, MIAResult)
    assert (r.n_train, r.n_eval, r.n_forget, r.feature) == (180, 180, 100, "loss")
    for v in (r.mia_forget, r.mia_retain, r.mia_test, r.mia_auc):
        assert 0.0 <= v <= 1.0
    # the forget samples were trained on: the attack calls them members about as often as
    # held-out members (both are members of the Original's training set)
    assert abs(r.mia_forget - r.mia_retain) < 0.25
    assert mia(original, data, split, feature="loss", seed=0) == r  # deterministic
    pct = r.percent()
    assert pct["mia_forget"] == pytest.approx(100 * r.mia_forget) and pct["feature"] == "loss"
    table = mia_table({"original": r})
    assert list(table.columns) == ["original"] and table.iloc[0, 0] == round(100 * r.mia_forget, 1)


def test_mia_errors_name_the_valid_choices(data, original):
    split = class_split(data, 5)
    with pytest.raises(ValueError, match="valid features"):
        mia(original, data, split, feature="logits")
    with pytest.raises(ValueError, match="valid: svc, logistic"):
        mia(original, data, split, classifier="forest")


@pytest.mark.parametrize("classifier", ["svc", "logistic"])
def test_attack_copes_with_heavy_tailed_scalar_features(classifier):
    # members' losses ~1e-3, non-members' ~1e-2 with a few huge outliers: after plain
    # standardisation both bulks sit at one point and an RBF SVC calls almost everything a member
    rng = np.random.default_rng(3)

    def losses(scale, n):
        x = rng.exponential(scale, n)
        if scale > 5e-3:
            x[rng.random(n) < 0.03] = 20.0
        return x[:, None]

    r = attack(losses(1e-3, 300), losses(1e-2, 300), losses(1e-3, 100), losses(1e-3, 300), losses(1e-2, 300),
               classifier=classifier)
    assert r["mia_auc"] > 0.85
    assert r["mia_retain"] > 0.75 and r["mia_test"] < 0.35 and r["mia_forget"] > 0.75


def test_mia_grid_matches_single_attacks_and_summarises(data, original):
    split = random_split(data, 100, seed=1)
    untrained = build_model("resnet18", 10, 1, width=4).eval()
    models = {"original": original, "untrained": untrained}
    grid = mia_grid(models, data, split, ("loss", "entropy"), ("svc", "logistic"), n_train=100, n_eval=80, seed=2)
    assert set(grid) == {("loss", "svc"), ("loss", "logistic"), ("entropy", "svc"), ("entropy", "logistic")}
    single = mia(untrained, data, split, "entropy", n_train=100, n_eval=80, classifier="logistic", seed=2)
    assert grid["entropy", "logistic"]["untrained"] == single
    summary = mia_summary(grid, "mia_auc")
    assert summary.shape == (4, 2) and list(summary.columns) == ["original", "untrained"]
    assert summary.loc["loss / svc", "original"] == round(100 * grid["loss", "svc"]["original"].mia_auc, 1)


def test_warnings_name_an_attack_without_power_and_a_collapsed_method(capsys):
    from cu.mia import MIAResult, mia_table, warnings

    def r(forget, auc):
        return MIAResult(forget, 0.9, auc, 0.5, "softmax_sorted", "svc", 10, 10, 5, 0)

    rows = [{"method": "original", "acc_test": 0.9}, {"method": "retrain", "acc_test": 0.88},
            {"method": "a", "acc_test": 0.86}, {"method": "b", "acc_test": 0.40}]
    out = warnings({"original": r(0.9, 0.52), "retrain": r(0.7, 0.5), "a": r(0.6, 0.5), "b": r(0.1, 0.5)}, rows)
    assert len(out) == 2 and "no power" in out[0] and out[1].startswith("WARNING: b's test accuracy")
    assert warnings({"original": r(0.9, 0.7), "retrain": r(0.7, 0.6)}, rows[:2]) == []
    table = mia_table({"original": r(0.9, 0.7), "retrain": r(0.7, 0.6)})
    assert list(table.loc["D_tr^u gap to Retrain (pt)"]) == [20.0, 0.0]
