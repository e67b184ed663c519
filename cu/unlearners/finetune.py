r"""Finetune: keep training the Original on the retained data only (Golatkar, Achille, Soatto,
"Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep Networks", CVPR 2020, the
"Fine-tune" baseline; the paper's "Finetune", Sec. 5.1).

    for epoch in 1..epochs:
        for each batch (X^r, Y^r) of D_tr^r (seeded shuffle):
            theta <- SGD step (lr, momentum, weight decay) on
                     CE(F(X^r), Y^r) + (l2_to_original / 2) * ||theta - theta_0||^2

It relies on catastrophic forgetting: D_tr^u is never read (only the optional tracking of its
accuracy after each epoch touches it, outside the timed part). There is no termination rule:
it runs a fixed number of epochs.

Two recipes, as overrides in RECIPES; the default is RECIPES["scrub"]:

    scrub          : the Golatkar / SCRUB baseline (default). `finetune(model, retain_loader,
                     epochs=10, lr=0.01)` with `torch.optim.SGD(lr=lr, weight_decay=0)` (no momentum)
                     in AdityaGolatkar/SelectiveForgetting `Forgetting.ipynb` and meghdadk/SCRUB
                     `large_scale_unlearning.ipynb`; batch 128 (`--batch-size` default of both).
                     BatchNorm in train mode as in SCRUB's `train_vanilla` (Golatkar's notebook
                     freezes it, `model.eval()`, with `--disable-bn`). Golatkar's loop also adds
                     `l2_penalty(model, model_init, weight_decay)`, a pull towards the weights at the
                     start of fine-tuning; SCRUB's does not. It is `l2_to_original` here, 0 (SCRUB).
    unlearn_sparse : the "FT" baseline of OPTML-Group/Unlearn-Sparse (Jia et al., NeurIPS 2023):
                     `unlearn/FT.py::FT_iter` (`model.train()`, CE on `data_loaders["retain"]`, no
                     l1 term for FT), `unlearn/impl.py::_iterative_unlearn_impl` (`torch.optim.SGD(
                     lr=args.unlearn_lr, momentum=args.momentum, weight_decay=args.weight_decay)`, a
                     MultiStepLR at `--decreasing_lr` 91,136 that never fires within 10 epochs, no
                     warm-up), `arg_parser.py` (`--momentum` 0.9, `--weight_decay` 5e-4,
                     `--batch_size` 256) and the README's FT command (`--unlearn_lr 0.01
                     --unlearn_epochs 10`): SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch
                     256, 10 epochs, constant lr. Plain SGD at 0.01 barely moves an Original whose
                     retain loss is near 0 (trained without augmentation); momentum 0.9 lets the
                     same steps go up to 1 / (1 - 0.9) = 10 times as far.

    cu.unlearners.run("finetune", original, data, split, **RECIPES["unlearn_sparse"])

Deviations: no data augmentation (Unlearn-Sparse's CIFAR-10 retain loader keeps random crop and flip
unless `--no-aug`); the retain order is a seeded permutation per epoch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from cu.data import DeviceData, Split, batches
from cu.results import Record
from cu.runtime import set_seed
from cu.training import sgd
from cu.unlearners import register
from cu.unlearners.common import ForgetCurve, Stopwatch, optimizer_step

# Overrides that select a recipe (the default is "scrub"); see the module docstring.
RECIPES = {
    "scrub": dict(epochs=10, lr=0.01, momentum=0.0, weight_decay=0.0, l2_to_original=0.0, batch_size=128),
    "unlearn_sparse": dict(epochs=10, lr=0.01, momentum=0.9, weight_decay=5e-4, l2_to_original=0.0,
                           batch_size=256),
}


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 10               # passes over D_tr^r (Golatkar / SCRUB notebooks and Unlearn-Sparse: 10)
    lr: float = 0.01               # SGD learning rate per batch of `batch_size` (all three: 0.01)
    momentum: float = 0.0          # Golatkar / SCRUB: plain SGD (Unlearn-Sparse: 0.9)
    weight_decay: float = 0.0      # Golatkar / SCRUB: weight_decay=0 in the optimiser (Unlearn-Sparse: 5e-4)
    l2_to_original: float = 0.0    # weight of (1/2)||theta - theta_0||^2 (Golatkar's l2_penalty; SCRUB: none)
    batch_size: int = 128          # retain batch (Golatkar / SCRUB --batch-size 128; Unlearn-Sparse 256)
    track_size: int = 512          # forget samples whose accuracy is logged after each epoch (0: off)
    seed: int = 0


def l2_to_start(model: nn.Module, weight: float):
    """Golatkar's `l2_penalty`: a function of the model giving (weight / 2) ||theta - theta_0||^2, theta_0 the
    weights now (at the start of unlearning); 0 when weight is 0."""
    if not weight:
        return lambda m: 0.0
    anchor = [p.detach().clone() for p in model.parameters()]
    return lambda m: 0.5 * weight * sum((p - p0).pow(2).sum() for p, p0 in zip(m.parameters(), anchor))


@register("finetune", config=FinetuneConfig, tasks=("sample", "class"))
def finetune(model: nn.Module, data: DeviceData, split: Split, cfg: FinetuneConfig,
             progress: bool = False) -> tuple[nn.Module, Record]:
    gen = set_seed(cfg.seed)
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    prox = l2_to_start(model, cfg.l2_to_original)
    dev = data.device
    step = 0
    clock = Stopwatch()
    per_epoch = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock)
    for _ in tqdm(range(cfg.epochs), desc="finetune", disable=not progress, leave=False):
        model.train()
        for rb in batches(split.retain, cfg.batch_size, gen):
            rb = rb.to(dev)
            loss = F.cross_entropy(model(data.x_train[rb]), data.y_train[rb])
            loss = loss + prox(model)
            step += 1
            optimizer_step(opt, loss, "finetune", step)
        per_epoch(model)
    model.eval()
    return model, Record("finetune", split.task, seconds=clock.stop(), passes=cfg.epochs, stopped="fixed",
                         hparams=asdict(cfg), extra={"steps": step, "forget_acc_per_epoch": per_epoch.points})
