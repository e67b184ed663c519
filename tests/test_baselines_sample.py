"""The sample-unlearning baselines: finetune, neggrad, fisher, lcodec (each does what it claims),
their pieces against hand computations, and the registry contract."""
import dataclasses
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cu.unlearners as U
from cu.data import DeviceData, Split, class_split, random_split, sample
from cu.runtime import set_seed
from cu.training import accuracy
from cu.unlearners.fisher import fisher_diagonal, noise_variance
from cu.unlearners.lcodec import codec, foci, noise_sigma, woodbury_solve

METHODS = ("finetune", "neggrad", "fisher", "lcodec")
# tiny settings, so that each run takes seconds on a CPU
FAST = {
    "finetune": dict(epochs=1, track_size=0),
    "neggrad": dict(max_passes=2, stop_when_unlearned=False, track_size=16),
    "fisher": dict(fisher_size=16, alpha=1e-6),
    "lcodec": dict(n_perturbations=40, hessian_size=64, scrub_batch_size=10, eval_size=0, track_size=0),
}


@pytest.fixture(scope="module")
def split(data):
    return random_split(data, 30, seed=0)


def poisoned(data: DeviceData, idx: torch.Tensor) -> DeviceData:
    """A copy of `data` whose training images `idx` are NaN: any step that trains on them is NaN."""
    x = data.x_train.clone()
    x[idx] = float("nan")
    return dataclasses.replace(data, x_train=x)


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- registry

@pytest.mark.parametrize("name", METHODS)
def test_registered_for_both_tasks(name):
    assert name in U.names("sample") and name in U.names("class")
    assert U.get(name).doc.strip()  # a module docstring that cites the paper
    cfg = U.make_config(name)
    assert all(f.default is not dataclasses.MISSING for f in dataclasses.fields(cfg)) and hasattr(cfg, "seed")
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        U.make_config(name, not_a_field=1)


@pytest.mark.parametrize("name", METHODS)
def test_original_untouched_and_seed_reproducible(name, original, data, split):
    before = {k: v.clone() for k, v in original.state_dict().items()}
    m1, r1 = U.run(name, original, data, split, **FAST[name])
    m2, r2 = U.run(name, original, data, split, **FAST[name])
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert not same_state(m1, original)  # it did something
    assert same_state(m1, m2)            # same seed -> the same model
    assert r1.method == name and r1.task == "sample" and r1.seconds > 0
    assert r1.hparams == r2.hparams == dataclasses.asdict(U.make_config(name, **FAST[name]))


def test_fisher_other_seed_other_noise(original, data, split):
    m1, _ = U.run("fisher", original, data, split, **FAST["fisher"])
    m2, _ = U.run("fisher", original, data, split, **{**FAST["fisher"], "seed": 1})
    assert not same_state(m1, m2)


# --------------------------------------------------------------------------- finetune

def test_finetune_trains_on_retain_only_and_keeps_retain_accuracy(original, data, split):
    bad = poisoned(data, split.forget)  # a step on a forget sample would make the loss NaN
    model, rec = U.run("finetune", original, bad, split, epochs=1, track_size=0)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert rec.extra["steps"] == math.ceil(len(split.retain) / 128) and rec.stopped == "fixed"
    assert accuracy(model, data, "train", split.retain) >= accuracy(original, data, "train", split.retain) - 0.05
    assert accuracy(model, data, "test", split.test) >= accuracy(original, data, "test", split.test) - 0.05
    # the poison does catch a method that trains on forget samples
    with pytest.raises(FloatingPointError):
        U.run("neggrad", original, bad, split, max_passes=1, track_size=0)


# --------------------------------------------------------------------------- neggrad

def test_neggrad_lowers_forget_accuracy_from_forget_samples_only(original, data, split):
    bad = poisoned(data, split.retain)  # it must never read a retained sample
    model, rec = U.run("neggrad", original, bad, split, lr=0.1, max_passes=3, stop_when_unlearned=False,
                       track_size=30)
    assert accuracy(model, data, "train", split.forget) < accuracy(original, data, "train", split.forget) - 0.2
    assert rec.passes == 3 and rec.stopped == "fixed" and rec.extra["steps"] == 3  # a fixed budget (issue #16)
    assert len(rec.curve) == 3 and rec.curve[-1] == pytest.approx(accuracy(model, data, "train", split.forget))


def test_neggrad_stops_by_the_papers_rule(original, data, split):
    model, rec = U.run("neggrad", original, data, split, lr=0.1, max_passes=30, stop_when_unlearned=True,
                       track_size=0)  # the rule is an option since issue #16; the default is a fixed budget
    assert rec.stopped == "condition" and rec.passes < 30
    last = rec.extra["checks"][-1]
    assert last["acc_eval_forget"] <= last["acc_eval_test"]


# --------------------------------------------------------------------------- fisher

def tiny_problem(n=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    data = DeviceData("tiny", x, y, x[:2], y[:2], classes, tuple(map(str, range(classes))))
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, classes))
    model[1].running_mean.uniform_(-0.5, 0.5)  # eval-mode BatchNorm with non-trivial statistics
    return model.eval(), data


@pytest.mark.parametrize("empirical", [False, True])
def test_fisher_diagonal_matches_the_original_loop(empirical):
    model, data = tiny_problem()
    idx = torch.arange(len(data.y_train))
    got = fisher_diagonal(model, data, idx, empirical=empirical, chunk=4)
    # the original's `hessian()`: batch 1, every class y weighted by p(y|x) (or the label only)
    want = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for i in idx:
        out = model(data.x_train[i:i + 1])
        prob = F.softmax(out, 1)[0].detach()
        for c in range(data.num_classes):
            if empirical and c != int(data.y_train[i]):
                continue
            model.zero_grad()
            F.cross_entropy(out, torch.tensor([c])).backward(retain_graph=True)
            for k, p in model.named_parameters():
                want[k] += (1.0 if empirical else prob[c]) * p.grad.pow(2) / len(idx)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-9)


def test_noise_variance_follows_the_original_rules():
    model, _ = tiny_problem()
    fim = {k: torch.full_like(p, 0.5) for k, p in model.named_parameters()}
    fim["0.weight"][0] = 0.0  # no information: clamped at 1e3
    var = noise_variance(model, fim, alpha=1e-3)
    assert torch.allclose(var["0.weight"][1], torch.full_like(var["0.weight"][1], 2e-3))
    # filter 0: mean over dim 1 of the clamped 1/F (all of that filter's weights have F = 0)
    assert torch.allclose(var["0.weight"][0], torch.full_like(var["0.weight"][0], 1e-3 * 1e3))
    assert torch.allclose(var["1.weight"], torch.full_like(var["1.weight"], 2e-3 * 10))  # BatchNorm x10
    assert torch.allclose(var["4.weight"], torch.full_like(var["4.weight"], 2e-3 * 10))  # last layer x10
    fim["4.bias"].zero_()
    assert torch.allclose(noise_variance(model, fim, 1e-3)["4.bias"], torch.full((3,), 1e-3 * 1e2 * 10))


def test_fisher_alpha_zero_is_the_identity_and_noise_is_smaller_where_fisher_is_large(original, data, split):
    model0, rec0 = U.run("fisher", original, data, split, fisher_size=16, alpha=0.0)
    assert same_state(model0, original)
    model, rec = U.run("fisher", original, data, split, fisher_size=16, alpha=1e-6)
    assert not same_state(model, original)
    # the same seeded subset as the method's -> the Fisher and the variances it used
    idx = sample(split.retain, 16, set_seed(0)).sort().values
    fim = fisher_diagonal(original, data, idx)
    var = noise_variance(original, fim, alpha=1e-6)
    p0 = dict(original.named_parameters())
    delta = {k: (p - p0[k]).detach() for k, p in model.named_parameters()}
    z = torch.cat([(delta[k] / var[k].sqrt()).flatten() for k in delta])
    assert abs(float(z.mean())) < 0.05 and 0.95 < float(z.std()) < 1.05  # N(0, var) realised
    # per-parameter variances (1-d tensors): well-informed weights move less than clamped ones
    ones = [k for k, p in model.named_parameters() if p.ndim == 1]
    f1 = torch.cat([fim[k] for k in ones])
    d1 = torch.cat([delta[k].abs() for k in ones])
    hi, lo = f1 > 1e-2, f1 < 1e-3  # 1/F below / above the clamp of 1e3
    assert hi.sum() >= 5 and lo.sum() >= 5
    assert d1[hi].mean() < 0.5 * d1[lo].mean()


def test_fisher_class_task_resets_the_forgotten_row(original, data):
    split = class_split(data, 3)
    model, _ = U.run("fisher", original, data, split, fisher_size=16, alpha=0.0)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, original.state_dict()[k])]
    assert sorted(changed) == ["classifier.1.bias", "classifier.1.weight"]
    w, w0 = model.classifier[1].weight, original.classifier[1].weight
    assert torch.equal(torch.cat([w[:3], w[4:]]), torch.cat([w0[:3], w0[4:]]))
    assert w[3].abs().max() < 0.2 < w0[3].abs().max()


# --------------------------------------------------------------------------- lcodec

def test_codec_and_foci_against_their_arithmetic():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 40, generator=g)
    y = x[:, 7] + x[:, 21] + 0.1 * torch.rand(300, generator=g)

    def reference(z, y, cond=None):  # codec/torch_codec.py with exact distances
        n = len(y)
        r = torch.empty(n, dtype=torch.long)
        r[torch.argsort(y)] = torch.arange(1, n + 1)

        def nn1(w):
            d = torch.cdist(w, w, compute_mode="donot_use_mm_for_euclid_dist")
            d.fill_diagonal_(float("inf"))
            return d.argmin(1)
        if cond is None:
            rm, ell = r[nn1(z[:, None])], (n + 1) - r
            return float((n * torch.minimum(r, rm) - ell ** 2).sum() / torch.dot(ell, n - ell))
        rm, rn = r[nn1(torch.hstack([cond, z[:, None]]))], r[nn1(cond)]
        return float((torch.minimum(r, rm) - torch.minimum(r, rn)).sum() / (r - torch.minimum(r, rn)).sum())

    t2 = codec(y, x)
    assert torch.allclose(t2, torch.tensor([reference(x[:, j], y) for j in range(40)], dtype=t2.dtype))
    t3 = codec(y, x[:, :10], x[:, [21]])
    assert torch.allclose(t3, torch.tensor([reference(x[:, j], y, x[:, [21]]) for j in range(10)], dtype=t3.dtype))
    chosen, values = foci(x, y)
    assert set(chosen[:2]) == {7, 21} and all(v > 0 for v in values)
    assert foci(x, y, max_selected=1)[0] == chosen[:1]


def test_woodbury_and_noise_scale():
    g = torch.Generator().manual_seed(0)
    a, b, v = (torch.randn(30, generator=g, dtype=torch.float64) for _ in range(3))
    h = 0.01 * torch.eye(30, dtype=torch.float64) + 2.0 * torch.outer(a, a) - 0.3 * torch.outer(b, b)
    torch.testing.assert_close(woodbury_solve(v, 0.01, [a, b], [2.0, -0.3]), torch.linalg.solve(h, v))
    assert torch.equal(woodbury_solve(v, 0.5, [], []), v / 0.5)
    # NoisyReturn with n = 50,000, m = 1, lambda = 0.01: gamma = 2e-4, sigma = 2e-3 sqrt(2 ln 125)
    assert noise_sigma(50_000, 1, 0.01, 0.1, 0.01) == pytest.approx(2e-3 * math.sqrt(2 * math.log(125)))
    assert noise_sigma(50_000, 2, 0.01, 0.1, 0.01) == pytest.approx(4 * noise_sigma(50_000, 1, 0.01, 0.1, 0.01))


class LogReg(nn.Module):
    """Logistic regression as a two-class network: logits (w.x, 0), one Linear unit, no bias."""

    def __init__(self, d: int):
        super().__init__()
        self.lin = nn.Linear(d, 1, bias=False)

    def forward(self, x):
        z = self.lin(x)
        return torch.cat([z, torch.zeros_like(z)], 1)


def logreg_optimum(x, y, reg, w):
    """argmin_w sum_i CE_i(w) + reg / 2 ||w||^2 by Newton's method."""
    t = (y == 0).double()
    for _ in range(30):
        s = torch.sigmoid(x @ w)
        grad = x.T @ (s - t) + reg * w
        hess = x.T @ (x * (s * (1 - s))[:, None]) + reg * torch.eye(len(w), dtype=w.dtype)
        w = w - torch.linalg.solve(hess, grad)
    assert grad.abs().max() < 1e-10
    return w


def test_lcodec_newton_step_points_to_the_retrained_optimum():
    """On L2-regularised logistic regression the noiseless LCODEC step lands near the retrained optimum.

    The regulariser is lambda (n - m) / 2 ||w||^2, so that the Newton step of removing U is
    (m / (n - m)) (H_r + lambda I)^{-1} g_U, LCODEC's formula; small inputs keep H_r << lambda I."""
    g = torch.Generator().manual_seed(0)
    n, d, m, lam = 60, 4, 18, 0.05
    x = 0.1 * torch.randn(n, d, generator=g, dtype=torch.float64)
    w_true = torch.tensor([8.0, -6.0, 4.0, 0.0], dtype=torch.float64)
    y = (torch.rand(n, generator=g, dtype=torch.float64) > torch.sigmoid(x @ w_true)).long()
    forget, retain = torch.arange(m), torch.arange(m, n)
    w0 = logreg_optimum(x, y, lam * (n - m), torch.zeros(d, dtype=torch.float64))
    w_r = logreg_optimum(x[retain], y[retain], lam * (n - m), w0)
    data = DeviceData("toy", x, y, x[:10], y[:10], 2, ("0", "1"))
    split = Split("sample", forget, retain, torch.empty(0, dtype=torch.long), torch.arange(10), 2)
    model = LogReg(d).double().eval()
    with torch.no_grad():
        model.lin.weight.copy_(w0[None])
    # one scrub of all of U, no noise (M = 0 -> sigma = 0), no revert rule
    out, rec = U.run("lcodec", model, data, split, l2_reg=lam, smooth_m=0.0, scrub_batch_size=m, n_perturbations=40,
                     hessian_size=n, eval_size=0, track_size=0)
    assert rec.extra["scrubs"] == 1 and rec.extra["selected"] == [[("lin", 0)]] and rec.extra["sigma"] == 0.0
    w1 = out.lin.weight.detach()[0]
    assert (w_r - w0).norm() > 0.1  # retraining moves the optimum
    assert (w1 - w_r).norm() < 0.1 * (w0 - w_r).norm()
    assert torch.cosine_similarity(w1 - w0, w_r - w0, dim=0) > 0.99


def test_lcodec_changes_only_the_selected_units(original, data):
    split = random_split(data, 2, seed=1)
    model, rec = U.run("lcodec", original, data, split, n_perturbations=60, hessian_size=64, eval_size=0,
                       track_size=2)
    assert rec.extra["scrubs"] == 2 and rec.extra["reverted"] == 0 and len(rec.curve) == 2
    selected = {(name, row) for scrub in rec.extra["selected"] for name, row in scrub}
    assert selected
    changed = set()
    ref = original.state_dict()
    for k, v in model.state_dict().items():
        diff = (v != ref[k]).reshape(len(v), -1).any(1) if v.ndim else (v != ref[k]).reshape(1)
        for row in torch.nonzero(diff).flatten().tolist():
            changed.add((k.rsplit(".", 1)[0], row))
    assert changed == selected  # every selected filter / row moved (noise), nothing else did


def test_lcodec_reverts_a_scrub_that_costs_test_accuracy(original, data):
    split = random_split(data, 2, seed=1)
    # an enormous noise (lambda tiny -> sigma huge) wrecks the selected units; the rule undoes it
    model, rec = U.run("lcodec", original, data, split, n_perturbations=60, hessian_size=64, l2_reg=1e-4,
                       eval_size=200, val_gap_skip=0.0, track_size=0)
    assert rec.extra["reverted"] == 2 and same_state(model, original)
