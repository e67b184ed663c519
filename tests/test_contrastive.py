"""Algorithm 1 (contrastive unlearning), Retrain, and the registry, on digits."""
import math

import pytest
import torch

import cu.unlearners as U
import cu.unlearners.contrastive as C
from cu.data import class_split, random_split
from cu.training import accuracy


@pytest.fixture(scope="module")
def class5(data):
    return class_split(data, 5)


@pytest.fixture(scope="module")
def forgot(original, data, class5):
    # lambda_CE 5, lr 5e-3: this 8-epoch width-8 Original loses most of its retain accuracy at lambda_CE 1
    # (26 % on D_ts^r, where the default profile's width-16 Original keeps 98.8 %); at lambda_CE 3 and lr 1e-2
    # it kept 86.1 % at two threads and 82.4 % at one (the bound below: 85.7-86.0 %), at this setting 91.3 / 93.2 %
    return U.run("contrastive", original, data, class5, lr=5e-3, lambda_ce=5.0, max_passes=5)


def test_class_unlearning_forgets_and_keeps_the_rest(data, original, class5, forgot):
    model, rec = forgot
    assert rec.stopped == "condition" and rec.passes <= 5
    assert accuracy(model, data, "test", class5.test_forget) <= 0.1          # Eq. 8 held
    assert accuracy(model, data, "train", class5.forget) < 0.2
    before = accuracy(original, data, "test", class5.test_retain)
    assert accuracy(model, data, "test", class5.test_retain) > before - 0.1  # the rest stays
    n_batches = rec.extra["forget_batches"]
    assert len(rec.curve) == n_batches and rec.extra["steps"] == 4 * n_batches  # omega = 4
    assert rec.curve[0] > rec.curve[-1] and rec.seconds > 0


def test_original_is_not_changed_in_place(original, forgot):
    model, _ = forgot
    assert any(not torch.equal(a, b) for a, b in zip(original.state_dict().values(), model.state_dict().values()))


def test_same_seed_same_model(data, original, class5):
    runs = [U.run("contrastive", original, data, class5, lr=1e-2, max_passes=1, track_size=0)[0] for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()))


def test_retain_batches_are_fresh_random_draws(data, original, class5, monkeypatch):
    drawn = []
    real = C.sample

    def spy(idx, k, gen):
        out = real(idx, k, gen)
        if len(idx) == len(class5.retain):
            drawn.append(out.clone())
        return out

    monkeypatch.setattr(C, "sample", spy)
    U.run("contrastive", original, data, class5, lr=1e-2, max_passes=1, track_size=0)
    assert len(drawn) == 4 * 3  # omega draws for each of the 3 forget batches of 64
    assert all(len(d) == 64 for d in drawn)
    assert len({tuple(d.tolist()) for d in drawn}) == len(drawn)
    assert set(torch.cat(drawn).tolist()) <= set(class5.retain.tolist())


def test_cap_and_check_every(data, original, class5):
    _, rec = U.run("contrastive", original, data, class5, lr=1e-7, max_passes=1, track_size=0)
    assert rec.stopped == "max_passes" and rec.passes == 1
    _, fine = U.run("contrastive", original, data, class5, lr=1e-2, max_passes=5, check_every=1, track_size=0)
    assert fine.stopped == "condition"
    assert [c["batch"] for c in fine.extra["checks"]] == list(range(1, fine.extra["forget_batches"] + 1))
    # over several passes: one check per forget batch, none repeated at a pass's end
    _, slow = U.run("contrastive", original, data, class5, lr=1e-6, max_passes=2, check_every=1, track_size=0)
    assert slow.passes == 2 and slow.extra["forget_batches"] == 2 * math.ceil(len(class5.forget) / 64)
    assert [c["batch"] for c in slow.extra["checks"]] == list(range(1, slow.extra["forget_batches"] + 1))


def test_sample_unlearning_eq9(data, original):
    split = random_split(data, 100, seed=0)
    # lambda_CE 3 for this weak Original, as in the class test above
    model, rec = U.run("contrastive", original, data, split, lr=1e-2, lambda_ce=3.0, max_passes=10)
    last = rec.extra["checks"][-1]
    assert rec.stopped == "condition" and last["acc_eval_forget"] <= last["acc_eval_test"]
    # this 8-epoch width-8 Original loses test accuracy (to about 76 %) before Eq. 9 holds: the
    # over-forgetting that issue 3 reports on CIFAR-10; the default profile's Original keeps 99 %
    assert accuracy(model, data, "test") > 0.6


def test_non_finite_loss_stops_with_method_and_step(data, original, class5, monkeypatch):
    monkeypatch.setattr(C, "contrastive_unlearning_loss", lambda *a, **k: torch.tensor(float("nan")))
    with pytest.raises(FloatingPointError, match="contrastive: loss became nan at step 1"):
        U.run("contrastive", original, data, class5)


def test_retrain_never_sees_the_class(data, original, class5):
    model, rec = U.run("retrain", original, data, class5, epochs=8, cache_dir=None)  # the fixture's recipe
    assert accuracy(model, data, "train", class5.forget) == 0.0
    assert accuracy(model, data, "test", class5.test_retain) > 0.8
    assert rec.method == "retrain" and rec.seconds > 0 and rec.passes == 8


def test_registry_errors(data, original, class5):
    with pytest.raises(ValueError, match="unknown unlearning method 'nope'; valid names: .*contrastive.*retrain"):
        U.get("nope")
    with pytest.raises(TypeError, match="unknown hyperparameter.*'lrr'"):
        U.run("contrastive", original, data, class5, lrr=1)
    assert "contrastive" in U.names("class") and "contrastive" in U.names("sample")
    for name, u in U.UNLEARNERS.items():
        assert u.doc.strip(), f"{name} has no module docstring"
