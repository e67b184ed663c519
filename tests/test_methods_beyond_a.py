"""Issue #21's methods beyond the paper's baselines: random labels (RL), SalUn and l1-sparse, as in
OPTML-Group/Unlearn-Saliency and Unlearn-Sparse. Known answers come from hand-written optimiser loops
on a tiny model with full batches; the digits runs assert structure and relations only."""
import copy
import dataclasses
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cu.unlearners as U
import cu.unlearners.random_label as rl_module
from cu.data import batches, class_split, random_split
from cu.unlearners.l1_sparse import l1_coefficient, l1_sparse_loss
from cu.unlearners.random_label import epoch_steps, random_labels
from cu.unlearners.salun import saliency, salun_mask, top_fraction
from helpers import tiny

METHODS = ("random_label", "salun", "l1_sparse")


@pytest.fixture(scope="module")
def split(data):
    return random_split(data, 20, seed=0)


def close(a: nn.Module, b: nn.Module, atol=1e-6) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.allclose(sa[k].float(), sb[k].float(), rtol=1e-5, atol=atol) for k in sa)


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in model.named_parameters()}


# --------------------------------------------------------------------------- registry and defaults

@pytest.mark.parametrize("name, defaults", [
    ("random_label", dict(epochs=10, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=256,
                          mix="forget_then_retain")),
    ("salun", dict(mask_fraction=0.5, freeze_unmasked=True, epochs=10, lr=0.013, momentum=0.9, weight_decay=5e-4,
                   batch_size=256, mix="forget_then_retain")),
    ("l1_sparse", dict(alpha=1e-4, no_l1_epochs=0, epochs=10, lr=0.01, momentum=0.9, weight_decay=5e-4,
                       batch_size=256)),
])
def test_registered_for_both_tasks_with_the_cifar10_defaults(name, defaults):
    assert name in U.names("class") and name in U.names("sample")
    assert dataclasses.asdict(U.make_config(name)).items() >= defaults.items()
    doc = " ".join(U.get(name).doc.split())
    assert "OPTML-Group/Unlearn-" in doc and "Deviations" in doc


def test_invalid_settings_name_the_value():
    model, data, split = tiny()
    with pytest.raises(ValueError, match="mask_fraction=0.0 must be in"):
        U.run("salun", model, data, split, mask_fraction=0.0)
    with pytest.raises(ValueError, match="mix='both'"):
        U.run("random_label", model, data, split, mix="both")
    with pytest.raises(ValueError, match="no_l1_epochs=3 must be between 0 and epochs=2"):
        U.run("l1_sparse", model, data, split, epochs=2, no_l1_epochs=3)


# --------------------------------------------------------------------------- random labels

def test_random_labels_are_uniform_over_all_classes_the_true_one_included():
    n, c = 20000, 10
    labels = random_labels(n, c, torch.Generator().manual_seed(0))
    assert labels.dtype == torch.long and labels.min() >= 0 and labels.max() < c
    share = torch.bincount(labels, minlength=c).float() / n
    assert torch.all((share - 1 / c).abs() < 0.02)
    true = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(1))
    assert abs((labels == true).float().mean().item() - 1 / c) < 0.02  # not "any class but the true one"
    assert torch.equal(labels, random_labels(n, c, torch.Generator().manual_seed(0)))


def test_rl_epoch_runs_all_forget_batches_first_then_the_retain_batches(data, split, monkeypatch):
    g = torch.Generator().manual_seed(0)
    steps = epoch_steps(split, data.y_train, data.num_classes, 8, "forget_then_retain", g)
    n_f = math.ceil(len(split.forget) / 8)
    assert len(steps) == n_f + math.ceil(len(split.retain) / 8)
    forget_part, retain_part = steps[:n_f], steps[n_f:]
    assert torch.equal(torch.cat([i for i, _ in forget_part]).sort().values, split.forget)
    assert torch.equal(torch.cat([i for i, _ in retain_part]).sort().values, split.retain)
    assert all(torch.equal(t, data.y_train[i]) for i, t in retain_part)
    # forget targets are a fresh draw for every batch of every epoch
    first = torch.cat([t for _, t in forget_part])[torch.cat([i for i, _ in forget_part]).argsort()]
    again = epoch_steps(split, data.y_train, data.num_classes, 8, "forget_then_retain", g)[:n_f]
    second = torch.cat([t for _, t in again])[torch.cat([i for i, _ in again]).argsort()]
    assert not torch.equal(first, second)
    # ... made by `random_labels`, one label per forget sample of the batch
    monkeypatch.setattr(rl_module, "random_labels", lambda n, c, gen: torch.full((n,), c - 1))
    spied = epoch_steps(split, data.y_train, data.num_classes, 8, "forget_then_retain", g)
    assert all(torch.all(t == data.num_classes - 1) and len(t) == len(i) for i, t in spied[:n_f])


def test_rl_shuffled_mix_relabels_forget_samples_inside_mixed_batches(data, split, monkeypatch):
    monkeypatch.setattr(rl_module, "random_labels", lambda n, c, gen: torch.full((n,), c - 1))
    steps = epoch_steps(split, data.y_train, data.num_classes, 256, "shuffled", torch.Generator().manual_seed(0))
    idx = torch.cat([i for i, _ in steps])
    assert torch.equal(idx.sort().values, torch.arange(len(data.y_train)))  # every sample once per epoch
    is_forget = torch.isin(idx, split.forget)
    targets = torch.cat([t for _, t in steps])
    assert torch.all(targets[is_forget] == data.num_classes - 1)
    assert torch.equal(targets[~is_forget], data.y_train[idx[~is_forget]])
    assert any(torch.isin(i, split.forget).any() and not torch.isin(i, split.forget).all() for i, _ in steps)


@pytest.mark.parametrize("mix", ["forget_then_retain", "shuffled"])
def test_rl_step_is_sgd_on_random_then_true_labels(mix):
    """Two epochs with full batches equal torch's SGD (momentum, weight decay) over the same steps."""
    model, data, split = tiny()
    out, rec = U.run("random_label", model, data, split, lr=0.1, epochs=2, batch_size=64, mix=mix, track_size=0)
    assert rec.extra["steps"] == (4 if mix == "forget_then_retain" else 2) and rec.passes == 2

    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)  # the generator `set_seed(0)` returns
    for _ in range(2):
        for idx, targets in epoch_steps(split, data.y_train, data.num_classes, 64, mix, g):
            ref.train()
            opt.zero_grad()
            F.cross_entropy(ref(data.x_train[idx]), targets).backward()
            opt.step()
    assert close(out, ref.eval())


@pytest.mark.parametrize("task", ["sample", "class"])
def test_rl_runs_through_the_registry(task, original, data, split):
    sp = split if task == "sample" else class_split(data, 5)
    before = {k: v.clone() for k, v in original.state_dict().items()}
    model, rec = U.run("random_label", original, data, sp, epochs=1, track_size=8, track_every=1)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert rec.method == "random_label" and rec.task == task and rec.seconds > 0 and rec.stopped == "fixed"
    assert rec.extra["steps"] == math.ceil(len(sp.forget) / 256) + math.ceil(len(sp.retain) / 256) == len(rec.curve)
    assert rec.hparams == dataclasses.asdict(U.make_config("random_label", epochs=1, track_size=8, track_every=1))
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------- SalUn

def test_saliency_is_the_magnitude_of_the_summed_forget_gradient():
    """|sum over batches of grad CE(batch mean)| in eval mode: not the sum of magnitudes, not train-mode BN."""
    model, data, split = tiny()
    model.train()  # saliency must switch to eval mode and back
    sal = saliency(model, data, split.forget, 3, torch.Generator().manual_seed(5))
    assert model.training
    model.eval()
    total = [torch.zeros_like(p) for p in model.parameters()]
    per_batch_abs = [torch.zeros_like(p) for p in model.parameters()]
    for fb in batches(split.forget, 3, torch.Generator().manual_seed(5)):
        grads = torch.autograd.grad(F.cross_entropy(model(data.x_train[fb]), data.y_train[fb]),
                                    list(model.parameters()))
        for t, a, gr in zip(total, per_batch_abs, grads):
            t += gr
            a += gr.abs()
    for (name, _), t in zip(model.named_parameters(), total):
        torch.testing.assert_close(sal[name], t.abs(), msg=name)
    assert any(not torch.allclose(sal[n], a) for (n, _), a in zip(model.named_parameters(), per_batch_abs))


def test_top_fraction_ranks_all_weights_together():
    scores = {"a": torch.tensor([[5.0, 1.0], [0.0, 3.0]]), "b": torch.tensor([4.0, 2.0, 6.0])}
    m = top_fraction(scores, 0.5)  # floor(0.5 * 7) = 3 weights: 6, 5 and 4, two of them in b
    assert torch.equal(m["a"], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(m["b"], torch.tensor([1.0, 0.0, 1.0]))
    g = torch.Generator().manual_seed(0)
    scores = {"w": torch.rand(7, 5, generator=g), "v": torch.rand(13, generator=g)}
    for f in (0.1, 0.5, 1.0):
        m = top_fraction(scores, f)
        kept = torch.cat([m[k].flatten() for k in scores]).bool()
        flat = torch.cat([scores[k].flatten() for k in scores])
        assert int(kept.sum()) == int(48 * f)
        if 0 < kept.sum() < len(flat):
            assert flat[kept].min() >= flat[~kept].max()


def test_salun_step_is_masked_sgd_with_unmasked_weights_reset():
    """One epoch with full batches (a forget step, then a retain step) equals torch's SGD with the gradients
    multiplied by the mask and, after each step, the weights outside it reset and their momentum zeroed."""
    model, data, split = tiny()
    cfg = U.make_config("salun", lr=0.1, epochs=1, batch_size=64, mask_fraction=0.4, track_size=0)
    out, rec = U.run("salun", model, data, split, config=cfg)

    ref = copy.deepcopy(model)
    grads = torch.autograd.grad(-F.cross_entropy(ref(data.x_train[split.forget]), data.y_train[split.forget]),
                                list(ref.parameters()))  # eval mode, the only batch
    flat = torch.cat([gr.abs().flatten() for gr in grads])
    k = int(0.4 * len(flat))
    threshold = flat.sort(descending=True).values[k - 1]
    masks = [(gr.abs() >= threshold).float() for gr in grads]
    assert sum(int(m.sum()) for m in masks) == k == rec.extra["masked_weights"]  # no ties in this problem
    assert rec.extra["mask_fraction"] == k / len(flat)
    theta0 = [p.detach().clone() for p in ref.parameters()]
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for idx, targets in epoch_steps(split, data.y_train, data.num_classes, 64, "forget_then_retain",
                                    torch.Generator().manual_seed(0)):
        ref.train()
        opt.zero_grad()
        F.cross_entropy(ref(data.x_train[idx]), targets).backward()
        for p, m in zip(ref.parameters(), masks):
            p.grad *= m
        opt.step()
        with torch.no_grad():
            for p, m, p0 in zip(ref.parameters(), masks, theta0):
                p.copy_(m * p + (1 - m) * p0)
                opt.state[p]["momentum_buffer"] *= m
    assert close(out, ref.eval())


def test_salun_moves_only_the_masked_weights(original, data, split):
    cfg = U.make_config("salun", epochs=1, mask_fraction=0.3, track_size=0)
    mask = salun_mask(original, data, split, cfg)
    before = params(original)
    model, rec = U.run("salun", original, data, split, config=cfg)
    total = sum(m.numel() for m in mask.values())
    assert rec.extra["masked_weights"] == int(sum(m.sum() for m in mask.values())) == int(0.3 * total)
    assert rec.extra["mask_fraction"] == pytest.approx(0.3, abs=1 / total)
    moved = 0
    for name, p in model.named_parameters():
        keep = mask[name].bool()
        assert torch.equal(p.detach()[~keep], before[name][~keep]), f"{name}: a weight outside the mask moved"
        moved += int((p.detach()[keep] != before[name][keep]).sum())
    assert moved > 0.5 * rec.extra["masked_weights"]


def test_salun_gradient_only_masking_lets_weight_decay_shrink_unmasked_weights(original, data, split):
    """freeze_unmasked=False is their code before #33: masked gradients, but weight decay still moves the
    other weights; without weight decay they stay put there too."""
    cfg = U.make_config("salun", epochs=1, mask_fraction=0.3, freeze_unmasked=False, track_size=0)
    mask = salun_mask(original, data, split, cfg)
    before = params(original)
    decayed, _ = U.run("salun", original, data, split, config=cfg)
    no_decay, _ = U.run("salun", original, data, split, config=dataclasses.replace(cfg, weight_decay=0.0))

    def outside(m):  # how far each weight outside the mask moved
        return torch.cat([(p.detach() - before[n])[~mask[n].bool()] for n, p in m.named_parameters()])

    assert outside(decayed).abs().max() > 0
    assert torch.all(outside(no_decay) == 0)


def test_salun_with_the_whole_mask_is_random_label(original, data, split):
    a, _ = U.run("salun", original, data, split, epochs=1, mask_fraction=1.0, lr=0.01, track_size=0)
    b, _ = U.run("random_label", original, data, split, epochs=1, lr=0.01, track_size=0)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("task", ["sample", "class"])
def test_salun_runs_through_the_registry(task, original, data, split):
    sp = split if task == "sample" else class_split(data, 5)
    model, rec = U.run("salun", original, data, sp, epochs=1, track_size=8)
    assert rec.method == "salun" and rec.task == task and rec.passes == 1 and rec.stopped == "fixed"
    assert rec.extra["steps"] == math.ceil(len(sp.forget) / 256) + math.ceil(len(sp.retain) / 256)
    assert 0.5 - 1e-3 < rec.extra["mask_fraction"] <= 0.5 and 0 < rec.extra["mask_seconds"] < rec.seconds
    assert rec.hparams == dataclasses.asdict(U.make_config("salun", epochs=1, track_size=8))


# --------------------------------------------------------------------------- l1-sparse

def test_l1_coefficient_decays_linearly_per_epoch():
    assert [l1_coefficient(0.2, e, 10) for e in (0, 5, 9)] == pytest.approx([0.2, 0.1, 0.02])
    assert [l1_coefficient(0.2, e, 10, no_l1_epochs=2) for e in (0, 4, 7, 8, 9)] == pytest.approx(
        [0.2, 0.1, 0.025, 0.0, 0.0])
    assert l1_coefficient(0.2, 3, 10, no_l1_epochs=10) == pytest.approx(0.2)  # Unlearn-Sparse's branch


def test_l1_sparse_loss_is_cross_entropy_plus_coefficient_times_l1_norm():
    model, data, split = tiny()
    x, y = data.x_train[split.retain], data.y_train[split.retain]
    ce = F.cross_entropy(model(x), y).item()
    norm = torch.cat([p.detach().flatten() for p in model.parameters()]).abs().sum().item()
    assert l1_sparse_loss(model, x, y, 0.03).item() == pytest.approx(ce + 0.03 * norm, rel=1e-6)
    assert l1_sparse_loss(model, x, y, 0.0).item() == pytest.approx(ce, rel=1e-6)


def test_l1_sparse_step_follows_the_schedule():
    """Two full-batch epochs equal SGD on CE + gamma_e ||theta||_1 with gamma = (alpha, alpha / 2)."""
    model, data, split = tiny()
    out, rec = U.run("l1_sparse", model, data, split, alpha=0.05, lr=0.1, epochs=2, batch_size=64, track_size=0)
    assert rec.extra["l1_coefficients"] == pytest.approx([0.05, 0.025]) and rec.extra["steps"] == 2

    def reference(coefficients):
        ref = copy.deepcopy(model)
        opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        r = split.retain
        for c in coefficients:
            ref.train()
            opt.zero_grad()
            l1 = torch.cat([p.flatten() for p in ref.parameters()]).abs().sum()
            (F.cross_entropy(ref(data.x_train[r]), data.y_train[r]) + c * l1).backward()
            opt.step()
        return ref.eval()

    assert close(out, reference([0.05, 0.025]))
    assert not close(out, reference([0.05, 0.05]), atol=1e-4)  # a constant coefficient is another method


@pytest.mark.parametrize("task", ["sample", "class"])
def test_l1_sparse_runs_through_the_registry(task, original, data, split):
    sp = split if task == "sample" else class_split(data, 5)
    model, rec = U.run("l1_sparse", original, data, sp, epochs=2, track_size=8)
    assert rec.method == "l1_sparse" and rec.task == task and rec.passes == 2 and rec.stopped == "fixed"
    assert rec.extra["steps"] == 2 * math.ceil(len(sp.retain) / 256)
    assert rec.extra["l1_coefficients"] == pytest.approx([1e-4, 5e-5]) and len(rec.extra["forget_acc_per_epoch"]) == 2
    sa, sb = model.state_dict(), original.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- all three

@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_weights(name, original, data, split):
    runs = [U.run(name, original, data, split, epochs=1, track_size=0, seed=s)[0] for s in (0, 0, 1)]
    s0, s1, s2 = (m.state_dict() for m in runs)
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    assert any(not torch.equal(s0[k], s2[k]) for k in s0)
