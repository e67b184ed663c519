r"""LCODEC: Mehta, Pal, Singh, Ravi, "Deep Unlearning via Randomized Conditionally Independent
Hessians", CVPR 2022 (github vsingh-group/LCODEC-deep-unlearning, `scrub/scrub_tools.py`
`inp_perturb`, driven by `scrub/multi_scrub.py`); the paper's "LCODEC", Sec. 5.1.

The forget set is removed in scrub steps of `scrub_batch_size` samples U (1 in the original):

1. Select parameters by conditional independence. Perturb U's inputs `n_perturbations` times
   (x + 0.1 * N(0, I)); for every perturbation record one feature per output unit of every
   Conv2d (its output averaged over the image) and nn.Linear (its output), averaged over U, and
   the loss CE(U). FOCI (Azadkia & Chatterjee) orders the units greedily by the CODEC
   coefficient T(loss; unit | units already chosen) and stops when the best T <= 0. A chosen
   unit selects its slice of parameters: the filter of a Conv2d, the row (and bias) of a Linear.
2. Noisy Newton step on the selected coordinates w_S only (Sekhari et al. 2021 as coded in
   `NewtonScrubStep` + `NoisyReturn`), n = |D_tr|, m = |U|, lambda = `l2_reg`:
       H_D  ~ a a^T / ||w1 - w2||_1,  a = g_D(w1) - g_D(w2)      (finite-difference Hessian, "FD")
       H_U  ~ b b^T / ||w - w'||_1,   b = g_U(w) - g_U(w'),  w' = w - fd_lr * g_U(w)
       H    = (n H_D - m H_U) / (n - m) + lambda I
       w_S <- w_S + (m / (n - m)) H^{-1} g_U(w)                  (towards the forget loss's ascent)
       w_S <- w_S + N(0, sigma^2 I),  sigma = (gamma / eps) sqrt(2 ln(1.25 / delta)),
       gamma = 2 M L^2 m^2 / (n^2 lambda^3)
   g_D, g_U are mean-CE gradients restricted to S, in eval mode (their `DisableBatchNorm` puts
   every child module in eval mode, so BatchNorm uses its running statistics).
3. As `multi_scrub.py`, a scrub that lowers the accuracy on held-out data by more than
   `val_gap_skip` is reverted (their validation set is the test set; here a seeded D_eval^ts of
   `eval_size` test samples, as for `contrastive`). The reference accuracy becomes the new one
   after every kept scrub, as theirs, so kept scrubs can add up to a larger drop.

Defaults from the authors' scripts (`multi_scrub.py` arguments, `scrub_scripts/cifar_scrub.sh`):
eps 0.1, delta 0.01, l2_reg 0.01 (lreg), M 0.25 and L 1 (`NoisyReturn`), perturbation noise
0.1, FD step 1e-3 ("for finite diff use a small learning rate"), one sample per scrub,
val_gap_skip 0.05, HessType 'Sekhari', approxType 'FD', selectionType 'FOCI' (full FOCI).

What is computed differently, and why:
- n_perturbations 200 instead of 1000: FOCI's nearest-neighbour search costs n_perturbations^2
  per candidate unit and greedy step, and it is most of a scrub's time. At 200 the FOCI of one
  scrub of ResNet-18 width 16 (1,466 units) takes about 0.7 s at one CPU thread on digits, a
  whole scrub about 0.9 s (`benchmarks/lcodec_foci.py`: 4.2x and 2.6x faster than the earlier
  64 MB distance blocks, the same selection and weights). The FOCI scores of all candidates of one greedy step are computed together
  (batched nearest neighbours with exact distances, in cache-sized blocks) instead of one codec
  call per unit; the arithmetic is theirs (`codec/torch_codec.py`, `codec/neighbors.py`
  `OneNN_Torch`: argmin over the distances with an infinite diagonal).
- The revert rule evaluates `eval_size` = 500 test samples after every scrub (theirs: the whole
  test set), to keep that evaluation from dominating a scrub on a CPU.
- H_D: their w1, w2, g_D are the parameters and accumulated gradients saved during the last two
  training epochs (`nn_utils.do_epoch`). The Original here is trained without saving them, so
  w1 = the Original, w2 = w1 - fd_lr * g_D(w1), g_D on a seeded subset of `hessian_size`
  training samples, computed once, as their saved H_D is fixed for all scrubs.
- The inverse is exact for their matrix: H is lambda I plus two rank-one terms, so H^{-1} g is
  solved by the Woodbury identity in O(|S|) instead of a dense |S| x |S| solve (|S| reaches tens
  of thousands of weights for a few 3x3 filters).
- Their sample Hessian reads g_U(w') from the gradient dictionary of the unstepped model
  (`getVectorizedGrad(sampGrad1, ...)`), so b is 0 or g_U(w) depending on the PyTorch version;
  here b uses the gradient at w' as intended.
- For m > 1 their batched mode keeps m = 1 in the step and the noise; here the step and gamma use
  the true m, as in Sekhari et al. With the default m = 1 both agree.

Note the scale: sigma grows as 1/n^2; with n = 1,437 (digits) and lambda = 0.01 it is about 7.5
per selected weight, so most scrubs wreck the selected units and are reverted; on CIFAR-10
(n = 50,000) it is about 0.006.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call
from tqdm import tqdm

from cu.data import DeviceData, Split, batches, sample
from cu.results import Record
from cu.runtime import set_seed
from cu.training import accuracy
from cu.unlearners import register
from cu.unlearners.common import ForgetCurve, Stopwatch, check_finite


@dataclass(frozen=True)
class LcodecConfig:
    epsilon: float = 0.1          # (eps, delta) of the Gaussian noise (cifar_scrub.sh)
    delta: float = 0.01
    l2_reg: float = 0.01          # lambda: Hessian smoothing and noise scale (cifar_scrub.sh lreg)
    smooth_m: float = 0.25        # M in gamma (NoisyReturn default, cross-entropy)
    lipschitz: float = 1.0        # L in gamma (NoisyReturn default)
    scrub_batch_size: int = 1     # forget samples per scrub (multi_scrub.py: one)
    n_perturbations: int = 200    # FOCI samples per scrub (theirs 1000; see the docstring)
    perturb_std: float = 0.1      # std of the input perturbation, normalised units (theirs 0.1)
    max_selected: int = 0         # cap on the units FOCI picks (0: none, stop when CODEC <= 0, theirs)
    fd_lr: float = 1e-3           # finite-difference step for both Hessians (theirs 1e-3)
    hessian_size: int = 1024      # training samples for g_D (theirs: gradients saved during training)
    val_gap_skip: float = 0.05    # revert a scrub that costs more D_eval^ts accuracy (multi_scrub.py)
    eval_size: int = 500          # |D_eval^ts| for the revert rule (0: no rule; theirs: the test set)
    chunk: int = 1024             # images per forward pass
    track_size: int = 512         # forget samples on which the per-scrub curve is tracked (0: off)
    track_every: int = 1          # record every k-th step of that curve (1: each; bounds its cost)
    seed: int = 0


# --------------------------------------------------------------------------- FOCI / CODEC

def _ranks(y: torch.Tensor) -> torch.Tensor:
    """R_i = position of y_i in ascending order, 1..n (argsort, as codec/torch_codec.py)."""
    r = torch.empty(len(y), dtype=torch.long, device=y.device)
    r[torch.argsort(y, stable=True)] = torch.arange(1, len(y) + 1, device=y.device)
    return r


def _nearest(cols: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
    """Nearest neighbour (not itself) of every sample in [conditioning set, col] for each column.

    cols (n, q), base (n, n) squared distances of the conditioning set with +inf on its diagonal, or None
    -> (q, n) indices (the first of equally near ones, as argmin). The distances are made a few columns at a
    time, about 1 MB, so they stay in cache: 3-4x faster than 64 MB blocks (benchmarks/lcodec_foci.py).
    """
    n, q = cols.shape
    step = max(1, (1 << 18) // (n * n))
    out = []
    for s in range(0, q, step):
        z = cols[:, s:s + step].T                          # (c, n)
        d = (z[:, :, None] - z[:, None, :]).pow_(2)       # (c, n, n)
        if base is not None:
            d += base                                      # its +inf diagonal excludes each sample itself
        else:
            d.diagonal(dim1=1, dim2=2).fill_(float("inf"))
        out.append(torch.min(d, dim=2).indices)
    return torch.cat(out)


def codec(y: torch.Tensor, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    """CODEC T_n(y; z_j | x) for every column z_j of z (n, q) -> (q,) (Azadkia & Chatterjee 2021).

    Without x: T_n(y; z_j) = sum_i (n min(R_i, R_M(i)) - L_i^2) / sum_i L_i (n - L_i);
    with x   : sum_i (min(R_i, R_M(i)) - min(R_i, R_N(i))) / sum_i (R_i - min(R_i, R_N(i))),
    M = nearest neighbour in (x, z_j), N = in x. The arithmetic of codec/torch_codec.py.
    """
    n = len(y)
    r = _ranks(y)
    if x is None:
        m = _nearest(z, None)
        ell = (n + 1) - r
        num = (n * torch.minimum(r, r[m]) - ell.pow(2)).sum(dim=1)
        return num.double() / (ell * (n - ell)).sum().double()
    return _codec_given(r, z, (x[:, None, :] - x[None, :, :]).pow(2).sum(-1))


def _codec_given(r: torch.Tensor, z: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    nb = base.clone()
    nb.fill_diagonal_(float("inf"))
    rn = torch.minimum(r, r[nb.argmin(dim=1)])
    m = _nearest(z, nb)
    num = (torch.minimum(r, r[m]) - rn).sum(dim=1)
    return num.double() / (r - rn).sum().double()


def foci(x: torch.Tensor, y: torch.Tensor, max_selected: int = 0) -> tuple[list[int], list[float]]:
    """Greedy FOCI: columns of x (n, p) ordered by conditional dependence with y; stops when the
    best CODEC is <= 0 (earlyStop=True in codec/torch_foci.py) or after `max_selected` columns."""
    n, p = x.shape
    first = codec(y, x)
    j = int(torch.argmax(torch.nan_to_num(first, nan=-math.inf)))
    chosen, values = [j], [float(first[j])]
    r = _ranks(y)
    base = (x[:, j:j + 1] - x[:, j:j + 1].T).pow(2)
    limit = p if max_selected <= 0 else min(p, max_selected)
    while len(chosen) < limit:
        rest = torch.tensor(sorted(set(range(p)) - set(chosen)), device=x.device)
        t = torch.nan_to_num(_codec_given(r, x[:, rest], base), nan=-math.inf)
        k = int(torch.argmax(t))
        if not float(t[k]) > 0.0:
            break
        j = int(rest[k])
        chosen.append(j)
        values.append(float(t[k]))
        base = base + (x[:, j:j + 1] - x[:, j:j + 1].T).pow(2)
    return chosen, values


# --------------------------------------------------------------------------- pieces of a scrub

def unit_features(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_perturbations: int, std: float,
                  gen: torch.Generator, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Per-unit activations and losses of `n_perturbations` noisy copies of the batch (x, y).

    Returns (features (n_perturbations, units), losses (n_perturbations,), units) where units[k] is
    (module, row): a Conv2d filter (output averaged over H, W) or a Linear output; both averaged over
    the batch, like the forward hooks of scrub/hypercolumn.py `ActivationsHook`.
    """
    model.eval()
    m = len(y)
    layers = [mod for mod in model.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    acts: list[tuple[nn.Module, torch.Tensor]] = []

    def hook(mod, _inp, out):
        acts.append((mod, out.mean(dim=(2, 3)) if out.ndim == 4 else out))

    handles = [mod.register_forward_hook(hook) for mod in layers]
    feats, losses, units = [], [], None
    try:
        per = max(1, chunk // m)
        with torch.no_grad():
            for s in range(0, n_perturbations, per):
                k = min(per, n_perturbations - s)
                noise = torch.randn((k, *x.shape), generator=gen).to(x.device, x.dtype)
                xp = (x.unsqueeze(0) + std * noise).flatten(0, 1)
                acts.clear()
                out = model(xp.contiguous(memory_format=torch.channels_last) if xp.ndim == 4 else xp)
                losses.append(F.cross_entropy(out, y.repeat(k), reduction="none").view(k, m).mean(1))
                feats.append(torch.cat([a.reshape(k, m, -1).mean(1) for _, a in acts], dim=1))
                if units is None:
                    units = [(mod, row) for mod, a in acts for row in range(a.shape[1])]
    finally:
        for h in handles:
            h.remove()
    return torch.cat(feats), torch.cat(losses), units


def slice_params(units: list) -> list[tuple[nn.Parameter, int]]:
    """(parameter, row) of every selected unit: weight[row] and bias[row] when there is a bias."""
    out = []
    for mod, row in units:
        out.append((mod.weight, row))
        if mod.bias is not None:
            out.append((mod.bias, row))
    return out


def _gather(tensors: dict[int, torch.Tensor], targets) -> torch.Tensor:
    return torch.cat([tensors[id(p)][row].reshape(-1) for p, row in targets])


def mean_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, shift: dict[int, torch.Tensor] | None = None,
              chunk: int = 1024) -> dict[int, torch.Tensor]:
    """Gradient of mean CE over (x, y) in eval mode, at the parameters + `shift` (keyed by id(param))."""
    model.eval()
    names = [k for k, _ in model.named_parameters()]
    plist = [p for _, p in model.named_parameters()]
    total = [torch.zeros_like(p) for p in plist]
    for s in range(0, len(y), chunk):
        params = {k: (p.detach() + shift[id(p)] if shift is not None else p.detach()).requires_grad_(True)
                  for k, p in zip(names, plist)}
        xb, yb = x[s:s + chunk], y[s:s + chunk]
        loss = F.cross_entropy(functional_call(model, params, (xb,)), yb, reduction="sum")
        for t, g in zip(total, torch.autograd.grad(loss, list(params.values()))):
            t += g
    return {id(p): t / len(y) for p, t in zip(plist, total)}


def woodbury_solve(g: torch.Tensor, lam: float, vecs: list[torch.Tensor], coefs: list[float]) -> torch.Tensor:
    """(lam I + sum_k c_k v_k v_k^T)^{-1} g for a few rank-one terms, exactly (Woodbury identity)."""
    if not vecs:
        return g / lam
    u = torch.stack(vecs, dim=1).double()                  # (P, k)
    c = torch.diag(torch.tensor(coefs, dtype=torch.float64, device=g.device))
    gd = g.double()
    small = lam * torch.eye(len(vecs), dtype=torch.float64, device=g.device) + u.T @ u @ c
    corr = u @ (c @ torch.linalg.solve(small, u.T @ gd))
    return ((gd - corr) / lam).to(g.dtype)


def noise_sigma(n: int, m: int, lam: float, eps: float, delta: float, smooth_m: float = 0.25,
                lipschitz: float = 1.0) -> float:
    """sigma of NoisyReturn: (gamma / eps) sqrt(2 ln(1.25 / delta)), gamma = 2 M L^2 m^2 / (n^2 lam^3)."""
    gamma = 2 * smooth_m * lipschitz ** 2 * m ** 2 / (n ** 2 * lam ** 3)
    return gamma / eps * math.sqrt(2 * math.log(1.25 / delta))


# --------------------------------------------------------------------------- the method

@register("lcodec", config=LcodecConfig, tasks=("sample", "class"))
def lcodec(model: nn.Module, data: DeviceData, split: Split, cfg: LcodecConfig,
           progress: bool = False) -> tuple[nn.Module, Record]:
    gen = set_seed(cfg.seed)
    dev = data.device
    n = len(data.y_train)
    lam = cfg.l2_reg
    eval_ts = (sample(split.test, cfg.eval_size, torch.Generator().manual_seed(cfg.seed + 1)).sort().values
               if cfg.eval_size > 0 else None)
    model.eval()
    clock = Stopwatch()
    curve = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock,
                        retain=split.test_retain, every=cfg.track_every)

    # the "old" full-training-set finite-difference Hessian, fixed for all scrubs
    hd = sample(torch.arange(n), cfg.hessian_size, gen).sort().values.to(dev)
    g_d1 = mean_grad(model, data.x_train[hd], data.y_train[hd], chunk=cfg.chunk)
    g_d2 = mean_grad(model, data.x_train[hd], data.y_train[hd], {k: -cfg.fd_lr * v for k, v in g_d1.items()},
                     chunk=cfg.chunk)
    dg_d = {k: g_d1[k] - g_d2[k] for k in g_d1}
    prev_acc = accuracy(model, data, "test", eval_ts) if eval_ts is not None else float("nan")

    unit_name = {id(mod): name for name, mod in model.named_modules()}
    selected, reverted, scrubs = [], 0, 0
    sigma = 0.0
    for ub in tqdm(list(batches(split.forget, cfg.scrub_batch_size, gen)), desc="lcodec",
                   disable=not progress, leave=False):
        ub = ub.to(dev)
        m = len(ub)
        xu, yu = data.x_train[ub], data.y_train[ub]
        feats, losses, units = unit_features(model, xu, yu, cfg.n_perturbations, cfg.perturb_std, gen, cfg.chunk)
        chosen, _ = foci(feats, losses, cfg.max_selected)
        targets = slice_params([units[j] for j in chosen])
        selected.append([(unit_name[id(units[j][0])], units[j][1]) for j in chosen])

        g_u1 = mean_grad(model, xu, yu, chunk=cfg.chunk)
        g_u2 = mean_grad(model, xu, yu, {k: -cfg.fd_lr * v for k, v in g_u1.items()}, chunk=cfg.chunk)
        g = _gather(g_u1, targets)
        vecs, coefs = [], []
        s_d = cfg.fd_lr * float(_gather(g_d1, targets).abs().sum())  # ||w1_S - w2_S||_1
        s_u = cfg.fd_lr * float(g.abs().sum())                       # ||w_S - w'_S||_1
        if s_d > 0:
            vecs.append(_gather(dg_d, targets))
            coefs.append(n / ((n - m) * s_d))
        if s_u > 0:
            vecs.append(g - _gather(g_u2, targets))
            coefs.append(-m / ((n - m) * s_u))
        step = (m / (n - m)) * woodbury_solve(g, lam, vecs, coefs)
        sigma = noise_sigma(n, m, lam, cfg.epsilon, cfg.delta, cfg.smooth_m, cfg.lipschitz)
        upd = step + sigma * torch.randn(len(g), generator=gen).to(dev, g.dtype)
        check_finite(upd.abs().sum(), "lcodec", scrubs + 1)

        with torch.no_grad():
            old = [p[row].clone() for p, row in targets]
            offset = 0
            for p, row in targets:
                k = p[row].numel()
                p[row] += upd[offset:offset + k].view_as(p[row])
                offset += k
        scrubs += 1
        if eval_ts is not None:
            acc = accuracy(model, data, "test", eval_ts)
            if prev_acc - acc > cfg.val_gap_skip:  # "BAD SAMPLE BATCH DETECTED, REVERTING MODEL"
                with torch.no_grad():
                    for (p, row), o in zip(targets, old):
                        p[row] = o
                reverted += 1
            else:
                prev_acc = acc
        curve(model)
    model.eval()
    n_sel = [len(s) for s in selected]
    extra = {"scrubs": scrubs, "reverted": reverted, "sigma": sigma,
             "selected_units_mean": sum(n_sel) / max(1, len(n_sel)), "selected": selected}
    return model, Record("lcodec", split.task, seconds=clock.stop(), passes=1, stopped="fixed",
                         curve=tuple(curve.points), hparams=asdict(cfg), extra={**curve.extra(), **extra})
