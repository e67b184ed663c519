"""The contrastive unlearning loss against hand-computed values (Eq. 5 and Eq. 6 as printed)."""
import math

import pytest
import torch
import torch.nn.functional as F

from cu.losses import contrastive_unlearning_loss as loss_fn

TAU = 0.5


def unit(v):
    return F.normalize(torch.tensor(v, dtype=torch.float64), dim=-1)


@pytest.fixture
def batch():
    # one anchor of class 0 along e1; retain: same-class p1 at 60 deg, negatives a1 (cls 1) and a2 (cls 2)
    z_u = unit([1.0, 0.0])[None]
    z_r = torch.stack([unit([0.5, math.sqrt(3) / 2]), unit([0.0, 1.0]), unit([-1.0, 0.0])])
    return z_u, torch.tensor([0]), z_r, torch.tensor([0, 1, 2])


def test_eq5_by_hand(batch):
    # s = cos / tau: s_p = 0.5/0.5 = 1, s_a1 = 0, s_a2 = -2; |N| = 2, log sum_P exp(s_p) = 1
    # l = -(1/2) [ (0 - 1) + (-2 - 1) ] = 2
    assert loss_fn(*batch, tau=TAU).item() == pytest.approx(2.0, abs=1e-12)


def test_eq6_by_hand(batch):
    # single class: denominator |N| = 2 -> l = -(1/2) [ (0 - log 2) + (-2 - log 2) ] = 1 + log 2
    assert loss_fn(*batch, tau=TAU, single_class=True).item() == pytest.approx(1 + math.log(2), abs=1e-12)


def test_two_positives_log_sum_exp():
    z_u = unit([1.0, 0.0])[None]
    z_r = torch.stack([unit([1.0, 0.0]), unit([0.0, 1.0]), unit([0.0, -1.0])])
    y_r = torch.tensor([0, 0, 3])
    # s = [2, 0, 0]; P = {2, 0}: log(e^2 + e^0); N = {0}: l = -(0 - log(e^2 + 1))
    expected = math.log(math.exp(2) + 1)
    assert loss_fn(z_u, torch.tensor([0]), z_r, y_r, tau=TAU).item() == pytest.approx(expected, abs=1e-12)


def test_mean_over_anchors_and_no_positive_fallback():
    z_u = torch.stack([unit([1.0, 0.0]), unit([0.0, 1.0])])
    y_u = torch.tensor([0, 5])  # anchor 2 has no same-label retain sample -> Eq. 6 term
    z_r = torch.stack([unit([1.0, 0.0]), unit([0.0, 1.0])])
    y_r = torch.tensor([0, 1])
    # anchor 1: s = [2, 0]; N = {s=0}; l1 = -(0 - 2) = 2
    # anchor 2: s = [0, 2]; N = both; no P -> l2 = -((0 + 2)/2 - log 2) = log 2 - 1
    expected = (2 + math.log(2) - 1) / 2
    assert loss_fn(z_u, y_u, z_r, y_r, tau=TAU).item() == pytest.approx(expected, abs=1e-12)


def test_anchor_without_negatives_contributes_nothing():
    z_u = torch.stack([unit([1.0, 0.0]), unit([0.0, 1.0])])
    z_r = torch.stack([unit([1.0, 0.0]), unit([1.0, 1.0])])
    y_r = torch.tensor([0, 0])
    # anchor 1 (label 0) has no negatives; anchor 2 (label 1): N = both, no P
    s = (z_u[1] @ z_r.T / TAU)
    l2 = -(s.mean() - math.log(2))
    got = loss_fn(z_u, torch.tensor([0, 1]), z_r, y_r, tau=TAU)
    assert got.item() == pytest.approx(l2.item(), abs=1e-12)


def test_no_contributing_anchor_is_zero_and_differentiable():
    z_u = unit([1.0, 0.0])[None].requires_grad_(True)
    z_r = unit([0.0, 1.0])[None].requires_grad_(True)
    out = loss_fn(z_u, torch.tensor([0]), z_r, torch.tensor([0]))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(z_u.grad, torch.zeros_like(z_u))


def test_not_the_authors_slip(batch):
    # the authors' code sums -log(denominator) over ALL non-negative columns too; here that would
    # weight the push term by |X^r| / |N| = 3/2 and give -(1/2)[(0 + -2) - 3 * 1] = 2.5, not 2
    assert loss_fn(*batch, tau=TAU).item() != pytest.approx(2.5, abs=1e-6)


def test_finite_and_differentiable_for_extreme_batches():
    torch.manual_seed(0)
    for tau in (1e-3, 0.07, 0.7, 10.0):
        z_u = F.normalize(torch.randn(64, 128), dim=1).requires_grad_(True)
        z_r = F.normalize(torch.randn(64, 128), dim=1).requires_grad_(True)
        y_u, y_r = torch.randint(0, 3, (64,)), torch.randint(0, 3, (64,))
        for single in (False, True):
            out = loss_fn(z_u, y_u, z_r, y_r, tau=tau, single_class=single)
            assert torch.isfinite(out)
            gu, gr = torch.autograd.grad(out, (z_u, z_r))
            assert torch.isfinite(gu).all() and torch.isfinite(gr).all()
            assert gu.abs().sum() > 0 and gr.abs().sum() > 0


def test_gradient_direction_pushes_anchor_from_own_class(batch):
    z_u, y_u, z_r, y_r = batch
    z_u = z_u.clone().requires_grad_(True)
    g, = torch.autograd.grad(loss_fn(z_u, y_u, z_r, y_r, tau=TAU), z_u)
    step = z_u.detach() - 0.1 * g
    # a gradient step lowers the similarity to the positive and raises the mean similarity to negatives
    assert (step @ z_r[0]) < (z_u.detach() @ z_r[0])
    assert (step @ z_r[1:].T).mean() > (z_u.detach() @ z_r[1:].T).mean()


def test_bad_shapes():
    with pytest.raises(ValueError, match="expected"):
        loss_fn(torch.randn(3, 4), torch.zeros(3), torch.randn(3, 5), torch.zeros(3))
    with pytest.raises(ValueError, match="tau"):
        loss_fn(torch.randn(3, 4), torch.zeros(3), torch.randn(3, 4), torch.zeros(3), tau=0)
