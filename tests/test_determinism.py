"""Same seed, same machine -> the same unlearned model, for every registered method (on digits)."""
import dataclasses

import pytest
import torch

import cu.unlearners as U
from cu.data import class_split, random_split
from cu.experiment import evaluate

# small settings so that every method runs in seconds; determinism does not depend on them
FAST = {
    "contrastive": {"max_passes": 1}, "finetune": {"epochs": 1}, "neggrad": {"max_passes": 2},
    "neggrad_plus": {"epochs": 1}, "random_label": {"epochs": 1}, "salun": {"epochs": 1}, "l1_sparse": {"epochs": 1},
    "ssd": {}, "bad_teacher": {"epochs": 1},
    "fisher": {"fisher_size": 64}, "lcodec": {"n_perturbations": 20, "hessian_size": 128, "eval_size": 100},
    "boundary_shrink": {"epochs": 1}, "boundary_expansion": {"epochs": 1}, "scrub": {"epochs": 1},
    "unsir": {"retain_per_class": 50, "noise_steps": 5}, "retrain": {"epochs": 1, "cache_dir": None},
}


@pytest.mark.parametrize("name", sorted(U.UNLEARNERS))
def test_same_seed_same_result(name, data, original):
    u = U.get(name)
    split = random_split(data, 5, seed=0) if "sample" in u.tasks else class_split(data, 5)
    out = [U.run(name, original, data, split, **FAST.get(name, {})) for _ in range(2)]
    (m1, r1), (m2, r2) = out
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    assert all(torch.equal(s1[k], s2[k]) for k in s1), f"{name}: weights differ between two runs with one seed"
    assert evaluate(m1, data, split) == evaluate(m2, data, split)
    assert r1.passes == r2.passes and r1.curve == r2.curve


TRACKED = [n for n in sorted(U.UNLEARNERS) if "track_size" in {f.name for f in dataclasses.fields(U.get(n).config)}]


@pytest.mark.parametrize("name", TRACKED)
def test_figure2_tracking_leaves_the_model_unchanged(name, data, original):
    """Figure 2's forget curve is measurement only: with and without it (`track_size`), one seed gives the
    same unlearned model, so runs with the curve off (cheaper wall time) report the same accuracies."""
    split = random_split(data, 5, seed=0) if "sample" in U.get(name).tasks else class_split(data, 5)
    (m0, r0), (m1, r1) = (U.run(name, original, data, split, **{**FAST.get(name, {}), "track_size": k}) for k in (0, 32))
    tracked = lambda r: r.curve or r.extra.get("forget_acc_per_epoch", [])  # Finetune logs it per epoch
    assert not tracked(r0) and len(tracked(r1)) > 0  # the second run did track
    s0, s1 = m0.state_dict(), m1.state_dict()
    assert all(torch.equal(s0[k], s1[k]) for k in s0), f"{name}: tracking the curve changed the weights"
    assert r0.passes == r1.passes and r0.stopped == r1.stopped
