"""Issue #16's baseline fixes: NegGrad's fixed Unlearn-Sparse budget, NegGrad+ (SCRUB's weighted
retain / forget loss), Finetune's recipes, Fisher's full-CIFAR-10 alpha and its recorded Fisher sample.
Known answers come from hand-written optimiser loops on a tiny model with full batches (so that the
batch order does not matter); the digits runs assert structure and relations only."""
import copy
import dataclasses
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cu.unlearners as U
from cu.data import class_split, random_split
import cu.unlearners.fisher as fisher_module
from cu.unlearners.finetune import RECIPES as FINETUNE_RECIPES
from cu.unlearners.neggrad import RECIPES as NEGGRAD_RECIPES
from cu.unlearners.neggrad_plus import RECIPES as NEGGRAD_PLUS_RECIPES
from helpers import tiny


@pytest.fixture(scope="module")
def split(data):
    return random_split(data, 30, seed=0)


def reference(model, steps, loss_fn, lr, momentum=0.0, weight_decay=0.0, train=True):
    """`steps` full-batch steps of torch's SGD on loss_fn(model, theta_0): what the method should do."""
    model = copy.deepcopy(model)
    theta0 = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    for _ in range(steps):
        model.train(train)
        opt.zero_grad()
        loss_fn(model, theta0).backward()
        opt.step()
    return model.eval()


def close(a: nn.Module, b: nn.Module, atol=1e-6) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.allclose(sa[k].float(), sb[k].float(), rtol=1e-5, atol=atol) for k in sa)


def ce(data, idx):
    return lambda m, _: F.cross_entropy(m(data.x_train[idx]), data.y_train[idx])


# --------------------------------------------------------------------------- neggrad

def test_neggrad_default_is_the_fixed_unlearn_sparse_budget(original, data, split):
    cfg = U.make_config("neggrad")
    assert dataclasses.asdict(cfg).items() >= NEGGRAD_RECIPES["unlearn_sparse"].items()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.max_passes) == (1e-4, 0.9, 5e-4, 256, 5)
    assert not cfg.stop_when_unlearned
    _, rec = U.run("neggrad", original, data, split, track_size=8)
    assert rec.passes == 5 and rec.stopped == "fixed" and rec.extra["checks"] == []
    assert rec.extra["steps"] == 5 * math.ceil(len(split.forget) / 256) == len(rec.curve)


def test_neggrad_default_step_is_sgd_with_momentum_and_weight_decay():
    model, data, split = tiny()
    f = split.forget
    out, rec = U.run("neggrad", model, data, split, lr=0.05, batch_size=len(f), max_passes=3, track_size=0)
    assert rec.extra["steps"] == 3
    ascent = lambda m, t0: -ce(data, f)(m, t0)
    assert close(out, reference(model, 3, ascent, 0.05, momentum=0.9, weight_decay=5e-4))
    assert not close(out, reference(model, 3, ascent, 0.05), atol=1e-4)  # plain SGD, the old default


def test_neggrad_until_unlearned_recipe_stops_by_the_condition(original, data, split):
    _, rec = U.run("neggrad", original, data, split, **{**NEGGRAD_RECIPES["until_unlearned"], "lr": 0.1},
                   track_size=0)
    assert rec.stopped == "condition" and rec.passes < NEGGRAD_RECIPES["until_unlearned"]["max_passes"]
    last = rec.extra["checks"][-1]
    assert last["acc_eval_forget"] <= last["acc_eval_test"] and len(rec.extra["checks"]) == rec.passes


# --------------------------------------------------------------------------- neggrad_plus

def test_neggrad_plus_registered_with_scrubs_cifar10_defaults():
    assert "neggrad_plus" in U.names("sample") and "neggrad_plus" in U.names("class")
    assert "Towards Unbounded Machine Unlearning" in " ".join(U.get("neggrad_plus").doc.split())
    cfg = U.make_config("neggrad_plus")
    assert dataclasses.asdict(cfg).items() >= NEGGRAD_PLUS_RECIPES["scrub_large"].items()
    assert (cfg.alpha, cfg.epochs, cfg.lr, cfg.momentum) == (0.9999, 5, 0.01, 0.0)
    assert NEGGRAD_PLUS_RECIPES["scrub_small"]["alpha"] == 0.95
    with pytest.raises(ValueError, match="alpha=1.5 must be in"):
        U.run("neggrad_plus", *tiny()[:3], alpha=1.5)


@pytest.mark.parametrize("l2, bn_train", [(0.0, True), (0.1, False)])
def test_neggrad_plus_step_is_the_weighted_loss_gradient(l2, bn_train):
    """Two full-batch steps equal SGD on 0.95 [CE_r + l2/2 ||theta - theta_0||^2] - 0.05 CE_f."""
    model, data, split = tiny()
    r, f = split.retain, split.forget
    out, rec = U.run("neggrad_plus", model, data, split, alpha=0.95, lr=0.5, epochs=2, l2_to_original=l2,
                     bn_train=bn_train, retain_batch_size=len(r), forget_batch_size=len(f), track_size=0)
    assert rec.extra["steps"] == 2 and rec.passes == 2 and rec.stopped == "fixed"

    def loss(m, theta0, forget_weight=0.05):
        prox = sum((p - p0).pow(2).sum() for p, p0 in zip(m.parameters(), theta0))
        return 0.95 * (ce(data, r)(m, theta0) + 0.5 * l2 * prox) - forget_weight * ce(data, f)(m, theta0)

    assert close(out, reference(model, 2, loss, 0.5, train=bn_train))
    no_ascent = reference(model, 2, lambda m, t0: loss(m, t0, forget_weight=0.0), 0.5, train=bn_train)
    assert not close(out, no_ascent, atol=1e-4)  # the forget term did move the weights


def test_neggrad_plus_with_alpha_one_is_finetune(original, data, split):
    """Forget weight 0: the same weights as Finetune on the same retain batches (first epoch, one seed)."""
    plus, _ = U.run("neggrad_plus", original, data, split, alpha=1.0, epochs=1, retain_batch_size=128,
                    track_size=0)
    ft, _ = U.run("finetune", original, data, split, epochs=1, track_size=0)
    for (k, p), q in zip(plus.named_parameters(), ft.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("task", ["sample", "class"])
def test_neggrad_plus_runs_through_the_registry(task, original, data, split):
    sp = split if task == "sample" else class_split(data, 3)
    before = {k: v.clone() for k, v in original.state_dict().items()}
    model, rec = U.run("neggrad_plus", original, data, sp, epochs=1, retain_batch_size=128, track_size=8,
                       track_every=1)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert rec.method == "neggrad_plus" and rec.task == task and rec.seconds > 0
    assert rec.extra["steps"] == math.ceil(len(sp.retain) / 128) == len(rec.curve)
    assert rec.hparams == dataclasses.asdict(U.make_config("neggrad_plus", epochs=1, retain_batch_size=128,
                                                           track_size=8, track_every=1))
    # a point every `track_every` steps and after each epoch's last step
    _, sparse = U.run("neggrad_plus", original, data, sp, epochs=1, retain_batch_size=128, track_size=8,
                      track_every=4)
    steps = sparse.extra["steps"]
    assert len(sparse.curve) == steps // 4 + (steps % 4 != 0)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------- finetune

def test_finetune_recipes_select_the_optimiser():
    assert set(FINETUNE_RECIPES) == {"scrub", "unlearn_sparse"}
    assert dataclasses.asdict(U.make_config("finetune")).items() >= FINETUNE_RECIPES["scrub"].items()
    us = FINETUNE_RECIPES["unlearn_sparse"]
    assert (us["lr"], us["momentum"], us["weight_decay"], us["epochs"], us["batch_size"]) == (0.01, 0.9, 5e-4, 10, 256)
    model, data, split = tiny()
    r = split.retain
    full = dict(epochs=3, batch_size=len(r), track_size=0)
    sparse, _ = U.run("finetune", model, data, split, **{**us, **full})
    scrub, _ = U.run("finetune", model, data, split, **{**FINETUNE_RECIPES["scrub"], **full})
    assert close(sparse, reference(model, 3, ce(data, r), 0.01, momentum=0.9, weight_decay=5e-4))
    assert close(scrub, reference(model, 3, ce(data, r), 0.01))
    assert not close(sparse, scrub, atol=1e-4)


# --------------------------------------------------------------------------- fisher

def test_fisher_default_alpha_is_full_cifar10s_and_the_fisher_sample_is_recorded(original, data, split, monkeypatch):
    assert U.make_config("fisher").alpha == 1e-7
    assert len(split.retain) > 1000  # so that the default subsample is a proper subset
    seen = []

    def counting(model, data, idx, *args, **kw):  # the Fisher's cost is not under test: count its samples
        seen.append(len(idx))
        return {k: torch.ones_like(p) for k, p in model.named_parameters()}

    monkeypatch.setattr(fisher_module, "fisher_diagonal", counting)
    _, rec = U.run("fisher", original, data, split)
    _, rec_all = U.run("fisher", original, data, split, fisher_size=0)
    assert seen == [rec.extra["fisher_samples"], rec_all.extra["fisher_samples"]] == [1000, len(split.retain)]
