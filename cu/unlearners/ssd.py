r"""Selective Synaptic Dampening (SSD): Foster, Schoepf, Brintrup, "Fast Machine Unlearning Without
Retraining Through Selective Synaptic Dampening", AAAI 2024 (arXiv 2308.07707). Class and sample
unlearning; no training: one gradient pass over D_tr^u, one over D = D_tr^r + D_tr^u, one rescaling.

    I_S[i] = 1/|B(S)| * sum_{b in B(S)} ( d CE_b / d theta_i )^2      CE_b: mean CE of batch b (eval mode)
    for every parameter element i with  I_{D_tr^u}[i] > alpha * I_D[i]:                  (selection)
        theta_i <- theta_i * min( (lambda * I_D[i] / I_{D_tr^u}[i]) ** exponent, lower_bound )  (dampening)

B(S) are S's unshuffled batches of `batch_size`, the last one partial. With exponent = lower_bound =
1 this is the paper's beta = min(lambda I_D / I_Df, 1): a selected weight shrinks, never grows.
Every parameter tensor takes part (conv, BatchNorm weight and bias, linear); buffers are untouched.

Checked against the authors' code, github if-loops/selective-synaptic-dampening (commit cdfdc0e):
  * `src/ssd.py::ParameterPerturber.calc_importance`: per batch `opt.zero_grad()`, CE with its
    default mean reduction, `loss.backward()`, `imp += p.grad.pow(2)`; then `imp /= len(dataloader)`.
    So the importance is the squared gradient of each *batch-mean* loss, averaged over batches,
    not a per-sample (empirical) Fisher; it depends on the batch size and on which samples share a
    batch. (That is why `cu.unlearners.fisher.fisher_diagonal`, a per-sample Fisher, is not reused.)
  * `src/ssd.py::ParameterPerturber.modify_weight`: `locations = where(fimp > oimp * selection_weighting)`,
    `weight = (oimp * dampening_constant / fimp) ** exponent`, values above `lower_bound` set to
    `lower_bound`, `p[locations] *= weight[locations]`. `min_layer` / `max_layer` are read but never
    used, so all parameters are eligible.
  * `src/forget_full_class_strategies.py::ssd_tuning` and `src/forget_random_strategies.py::ssd_tuning`:
    `lower_bound` 1, `exponent` 1, `model.eval()` before both importances, forget importance on
    `forget_train_dl`, global importance on `full_train_dl`.
  * `src/forget_full_class_main.py` / `src/forget_random_main.py`: `dampening_constant` (lambda) 1 and
    `selection_weighting` (alpha) 10 for ResNet18 in both (`10 * model_size_scaler`, the scaler 1 for
    ResNet18; 0.5 for the ViT in full-class forgetting; the comment there gives alpha 50, lambda 0.1
    for PinsFaceRecognition). `full_train_dl = DataLoader(ConcatDataset((retain, forget)))`, unshuffled.
    Batches: full-class `-b` 64 (its default; the `cifar*_fullclass_exps.sh` scripts do not set it)
    for both loaders; random forgetting `forget_train_dl` batch 128 (hard-coded) and `full_train_dl`
    `-b` 128 (its default there; `cifar10_random_exps.sh` does not set it). No data augmentation
    (`datasets.py::transform_unlearning`).

RECIPES: alpha and lambda are the same for both tasks; only the batch size differs. The config
cannot depend on the task, so the dataclass default is the full-class setting, and the original's
random-forgetting setting is `**RECIPES["random"]`:

    full_class: alpha 10, lambda 1, batch 64   (the dataclass default; the original's class forgetting)
    random    : alpha 10, lambda 1, batch 128  (the original's random-sample forgetting)

    cu.unlearners.run("ssd", original, data, split, **RECIPES["random"])

Order of D's batches (it changes the importances, see above). The original's full-class D is
`build_retain_forget_sets`'s retain list, built class by class, followed by the forget class, so its
batches hold (almost) one class each; here, for class unlearning, D_tr^r is sorted by label (stable,
class order as theirs) and followed by D_tr^u. For random forgetting theirs is
`torch.utils.data.random_split`'s random order, retain then forget; here D_tr^r then D_tr^u in
training-set order (the digits / CIFAR / SVHN training sets are in no class order, so batches are
mixed-class in both; which samples share a batch differs). D_tr^u's batches are in training-set order
(theirs: class order for one class = stored order; random_split order for samples).

Deviations:
  * Random forgetting at HEAD does not run as written: `forget_random_strategies.py::ssd_tuning` binds
    `ssd = ssd.ParameterPerturber(...)`, which shadows the module inside the function
    (UnboundLocalError). That line came from a contributed rename (commit 5e80b5a); the authors'
    upload (77161cc) reads `pdr = ssd.ParameterPerturber(...)` and is otherwise the same, and is what
    is implemented.
  * SSD draws no random numbers; `seed` is kept only for the common interface (it changes nothing).
  * No forget curve (Figure 2): SSD makes one update, like `fisher`; `Record.curve` is empty.
  * Inputs are normalised with this project's per-dataset statistics (theirs: CIFAR-100's, for all).

Record.extra: `dampened` (parameter elements rescaled), `selected_fraction` (of all elements),
`mean_factor` (mean multiplier over the selected elements), `forget_batches` / `full_batches`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from cu.data import DeviceData, Split, batches
from cu.results import Record
from cu.runtime import set_seed
from cu.unlearners import register
from cu.unlearners.common import Stopwatch

RECIPES = {
    "full_class": dict(alpha=10.0, lam=1.0, batch_size=64),
    "random": dict(alpha=10.0, lam=1.0, batch_size=128),
}


@dataclass(frozen=True)
class SsdConfig:
    alpha: float = 10.0          # selection: dampen where I_Df > alpha * I_D (their selection_weighting)
    lam: float = 1.0             # dampening constant lambda: factor (lambda * I_D / I_Df) ** exponent
    exponent: float = 1.0        # (theirs: 1)
    lower_bound: float = 1.0     # cap of the factor: weights never grow (theirs: 1)
    batch_size: int = 64         # importance batches, both sets (full-class 64; random forgetting 128)
    seed: int = 0                # unused: SSD is deterministic


def importance_order(data: DeviceData, split: Split) -> torch.Tensor:
    """The training indices of D = D_tr^r then D_tr^u, in the order of the original's `full_train_dl`:
    D_tr^r grouped by class (stable) for class unlearning, in training-set order for samples."""
    retain = split.retain
    if split.task == "class":
        y = data.y_train.cpu()[retain]
        retain = retain[torch.sort(y, stable=True).indices]
    return torch.cat([retain, split.forget])


def importances(model: nn.Module, data: DeviceData, idx: torch.Tensor, batch_size: int,
                progress: bool = False, desc: str = "ssd") -> dict[str, torch.Tensor]:
    """Per parameter name: the squared gradient of the batch-mean CE, averaged over the unshuffled
    batches of `idx` (in the given order; last batch partial). The model is put in eval mode."""
    model.eval()
    names, params = zip(*[(k, p) for k, p in model.named_parameters() if p.requires_grad])
    acc = [torch.zeros_like(p) for p in params]
    dev = data.device
    n = 0
    for b in tqdm(list(batches(idx, batch_size, shuffle=False)), desc=desc, disable=not progress, leave=False):
        b = b.to(dev)
        loss = F.cross_entropy(model(data.x_train[b]), data.y_train[b])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for a, g in zip(acc, grads):
            if g is not None:
                a.add_(g.detach().square())
        n += 1
    return {k: a / max(n, 1) for k, a in zip(names, acc)}


def dampen(model: nn.Module, global_imp: dict[str, torch.Tensor], forget_imp: dict[str, torch.Tensor],
           alpha: float, lam: float, exponent: float = 1.0, lower_bound: float = 1.0) -> dict:
    """Rescale in place every parameter element with forget_imp > alpha * global_imp by
    min((lam * global_imp / forget_imp) ** exponent, lower_bound). Returns counts."""
    selected = total = 0
    factor_sum = 0.0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in forget_imp:
                continue
            g, f = global_imp[name], forget_imp[name]
            mask = f > alpha * g
            factor = (lam * g[mask] / f[mask]).pow(exponent).clamp(max=lower_bound)
            p[mask] = p[mask] * factor
            selected += int(mask.sum())
            total += p.numel()
            factor_sum += float(factor.sum())
    return {"dampened": selected, "selected_fraction": selected / max(total, 1),
            "mean_factor": factor_sum / selected if selected else float("nan")}


@register("ssd", config=SsdConfig, tasks=("class", "sample"))
def ssd(model: nn.Module, data: DeviceData, split: Split, cfg: SsdConfig,
        progress: bool = False) -> tuple[nn.Module, Record]:
    set_seed(cfg.seed)
    clock = Stopwatch()
    full = importance_order(data, split)
    forget_imp = importances(model, data, split.forget, cfg.batch_size, progress, "ssd (forget)")
    global_imp = importances(model, data, full, cfg.batch_size, progress, "ssd (D)")
    stats = dampen(model, global_imp, forget_imp, cfg.alpha, cfg.lam, cfg.exponent, cfg.lower_bound)
    model.eval()
    n_batches = lambda n: -(-n // cfg.batch_size)  # noqa: E731
    return model, Record("ssd", split.task, seconds=clock.stop(), passes=0, stopped="fixed", hparams=asdict(cfg),
                         extra={**stats, "forget_batches": n_batches(len(split.forget)),
                                "full_batches": n_batches(len(full))})
