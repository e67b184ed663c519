"""Fidelity fixes of three class-unlearning baselines (issue #16), on the digits Original of
conftest.py: UNSIR's impair set holds the noise volume of the authors' code as run, Boundary
Shrink can step in pixel units and records its attack success rate, Boundary Expansion records
its shadow rate and runs at lr 0 (BatchNorm statistics alone)."""
import copy
import math

import pytest
import torch
import torch.nn as nn

import cu.unlearners as U
from cu.data import class_split
from cu.unlearners.boundary_shrink import BoundaryShrinkConfig, fgsm_neighbour, nearest_wrong_class, pixel_range
from cu.unlearners.unsir import UnsirConfig, retain_subset, unsir

FORGET = 5


@pytest.fixture(scope="module")
def split(data):
    return class_split(data, FORGET)


# --------------------------------------------------------------------------- UNSIR

def impair_inputs(original, data, split, cfg):
    """Run UNSIR, recording every input of a train-mode forward (the impair and repair batches)."""
    model = copy.deepcopy(original)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if m.training else None)
    _, rec = unsir(model, data, split, cfg)
    return torch.cat(seen), rec


@pytest.mark.parametrize("per_copy", [None, "noise_size"])
def test_unsir_impair_set_holds_copies_of_the_first_noise_inputs(per_copy, data, original, split):
    # noise_steps only shortens the noise optimisation; the impair set's size is the defaults'
    cfg = UnsirConfig(noise_steps=2, track_size=8)
    if per_copy == "noise_size":
        cfg = UnsirConfig(noise_steps=2, track_size=8, noise_per_copy=cfg.noise_size)
    sub = retain_subset(data, split, cfg.retain_per_class, torch.Generator().manual_seed(0))
    copies = max(1, round(20 * len(sub) / 9000))  # their 20 copies per 9000 retained samples
    channels = data.x_train.shape[1]
    # their loop appends batch[0].size(0) = the channel count of noise inputs per copy
    per = channels if per_copy is None else cfg.noise_size
    assert len(sub) == 1292 and copies == 3 and channels == 1

    x, rec = impair_inputs(original, data, split, cfg)
    assert rec.extra["noise_copies"] == copies and rec.extra["noise_per_copy"] == per
    assert rec.extra["noise_items"] == copies * per
    # every train-mode input: the impair set once, D_sub once more for the repair pass
    assert len(x) == 2 * len(sub) + copies * per
    real = {row.numpy().tobytes() for row in data.x_train}
    noise = [row for row in x if row.numpy().tobytes() not in real]
    assert len(noise) == copies * per
    assert len({row.numpy().tobytes() for row in noise}) == per  # `copies` copies of `per` distinct inputs
    impair_steps = math.ceil((len(sub) + copies * per) / cfg.batch_size)
    assert rec.extra["impair_steps"] == impair_steps == rec.extra["curve_phase"].count("impair")
    assert rec.extra["repair_steps"] == math.ceil(len(sub) / cfg.batch_size) == rec.extra["curve_phase"].count("repair")
    assert rec.extra["steps"] == rec.extra["impair_steps"] + rec.extra["repair_steps"]


def test_unsir_rejects_a_noise_per_copy_outside_the_batch():
    for bad in (0, 257):
        with pytest.raises(ValueError, match="noise_per_copy"):
            UnsirConfig(noise_per_copy=bad)
    assert UnsirConfig(noise_per_copy=256).noise_per_copy == 256


# --------------------------------------------------------------------------- Boundary Shrink

def test_pixel_range_is_the_normalised_value_of_pixels_0_and_1(digits, data):
    mean, std = digits.channel_stats()
    lo, hi = pixel_range(data)
    assert lo.shape == hi.shape == (1, data.x_train.shape[1], 1, 1)
    assert lo.flatten().tolist() == pytest.approx((-mean / std).tolist(), rel=1e-5)
    assert hi.flatten().tolist() == pytest.approx(((1 - mean) / std).tolist(), rel=1e-5)


@pytest.mark.parametrize("bound", [26 / 255, 0.1])
def test_fgsm_pixel_step_has_size_bound_in_pixel_units(bound, digits, data, original, split):
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in digits.channel_stats())
    to_pixel = lambda t: t * std + mean  # noqa: E731  (the inverse of cu.data's normalisation)
    x, y = data.x_train[split.forget], data.y_train[split.forget]
    p = to_pixel(x)
    p_adv = to_pixel(fgsm_neighbour(original, x, y, bound, pixel_range(data)))
    direction = (fgsm_neighbour(original, x, y, 1.0) - x).sign()  # the input-space FGSM step's sign
    d = p_adv - p
    grid = p_adv * 255
    assert (p_adv > -1e-5).all() and (p_adv < 1 + 1e-5).all()
    assert (grid - grid.round()).abs().max() < 1e-3  # on the 8-bit grid, as their FGSM rounds
    free = (p_adv > 1e-5) & (p_adv < 1 - 1e-5)  # not clamped at 0 or 1
    moved = free & (direction != 0)
    assert moved.float().mean() > 0.3
    # an unclamped pixel moves by `bound` (up to the 1/255 rounding) along the gradient's sign
    assert (d[moved].abs() - bound).abs().max() <= 0.5 / 255 + 1e-4
    assert torch.equal(d[moved].sign(), direction[moved])
    assert (d[free & (direction == 0)].abs() < 1e-4).all()  # no gradient, no step
    # a clamped pixel went at least as far as the bound allowed, towards the edge it sits on
    clamped = ~free & (direction != 0)
    assert (d[clamped].abs() <= bound + 0.5 / 255 + 1e-4).all()
    if bound == 26 / 255:  # on the grid: every unclamped step is exactly bound
        assert (d[moved].abs() - bound).abs().max() < 1e-4
    # the default "input" space steps `bound` in normalised units: a different pixel step (std != 1)
    d_input = to_pixel(fgsm_neighbour(original, x, y, bound)) - p
    assert (d_input[moved].abs() - bound * std.item()).abs().max() < 1e-4


@pytest.mark.parametrize("space, bound", [("input", 0.1), ("pixel", 0.25)])
def test_boundary_shrink_records_its_attack_success_rate(space, bound, data, original, split):
    _, rec = U.run("boundary_shrink", original, data, split, bound=bound, bound_space=space, epochs=1, track_size=0)
    rate = rec.extra["attack_success_rate"]
    assert 0.0 <= rate <= 1.0 and rec.hparams["bound_space"] == space
    # F_o is fixed and in eval mode: the rate is that of one attack on every forget sample
    pixel = pixel_range(data) if space == "pixel" else None
    _, crossed = nearest_wrong_class(original, data.x_train[split.forget], data.y_train[split.forget], bound,
                                     pixel=pixel)
    assert rate == pytest.approx(crossed.float().mean().item(), abs=2 / len(split.forget))


def test_boundary_shrink_rejects_an_unknown_bound_space():
    with pytest.raises(ValueError, match="bound_space='original'"):
        BoundaryShrinkConfig(bound_space="original")


# --------------------------------------------------------------------------- Boundary Expansion

def test_boundary_expansion_records_the_shadow_rate_on_the_whole_forget_set(data, original, split):
    _, rec = U.run("boundary_expansion", original, data, split, epochs=1, track_size=0)
    rate = rec.extra["shadow_rate"]
    assert 0.0 <= rate <= 1.0
    n = len(split.forget)
    assert rate * n == pytest.approx(round(rate * n), abs=1e-6)  # a count over all of D_tr^u


def test_boundary_expansion_at_lr_0_changes_only_batchnorm_statistics(data, original, split):
    model, rec = U.run("boundary_expansion", original, data, split, lr=0.0, epochs=1, track_size=0)
    assert 0.0 <= rec.extra["shadow_rate"] <= 1.0 and rec.extra["steps"] > 0
    before, after = dict(original.named_parameters()), dict(model.named_parameters())
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "lr=0 changed a parameter"
    bn = [(a, b) for a, b in zip(original.modules(), model.modules()) if isinstance(a, nn.modules.batchnorm._BatchNorm)]
    assert bn and all(not torch.equal(a.running_mean, b.running_mean) and not torch.equal(a.running_var, b.running_var)
                      for a, b in bn), "the forget batches did not re-estimate every BatchNorm layer's statistics"
    assert all(int(b.num_batches_tracked) == int(a.num_batches_tracked) + rec.extra["steps"] for a, b in bn)
