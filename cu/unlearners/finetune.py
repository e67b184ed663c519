r"""Finetune: keep training the Original on the retained data only (Golatkar, Achille, Soatto,
"Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep Networks", CVPR 2020, the
"Fine-tune" baseline; the paper's "Finetune", Sec. 5.1).

    for epoch in 1..epochs:
        for each batch (X^r, Y^r) of D_tr^r (seeded shuffle):
            theta <- theta - lr * grad [ CE(F(X^r), Y^r) + (l2_to_original / 2) * ||theta - theta_0||^2 ]

It relies on catastrophic forgetting: D_tr^u is never read (only the optional tracking of its
accuracy after each epoch touches it, outside the timed part). There is no termination rule:
it runs a fixed number of epochs.

Defaults, from the public code of the Golatkar baselines: `finetune(model, retain_loader,
epochs=10, lr=0.01)` with `torch.optim.SGD(lr=lr, weight_decay=0)` (no momentum) in
AdityaGolatkar/SelectiveForgetting `Forgetting.ipynb` and meghdadk/SCRUB
`large_scale_unlearning.ipynb`; batch 128 (`--batch-size` default of both). BatchNorm runs in
train mode as in SCRUB's `train_vanilla` (Golatkar's notebook freezes it, `model.eval()`, with
`--disable-bn`). Golatkar's loop also adds `l2_penalty(model, model_init, weight_decay)`, a pull
towards the weights at the start of fine-tuning; SCRUB's does not. It is `l2_to_original`
here, 0 by default (SCRUB).
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


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 10               # passes over D_tr^r (Golatkar / SCRUB notebooks: 10)
    lr: float = 0.01               # SGD learning rate per batch of `batch_size` (both notebooks: 0.01)
    momentum: float = 0.0          # both notebooks: plain SGD
    weight_decay: float = 0.0      # both notebooks: weight_decay=0 in the optimiser
    l2_to_original: float = 0.0    # weight of (1/2)||theta - theta_0||^2 (Golatkar's l2_penalty; SCRUB: none)
    batch_size: int = 128          # retain batch (--batch-size default 128)
    track_size: int = 512          # forget samples whose accuracy is logged after each epoch (0: off)
    seed: int = 0


@register("finetune", config=FinetuneConfig, tasks=("sample", "class"))
def finetune(model: nn.Module, data: DeviceData, split: Split, cfg: FinetuneConfig,
             progress: bool = False) -> tuple[nn.Module, Record]:
    gen = set_seed(cfg.seed)
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    anchor = [p.detach().clone() for p in model.parameters()] if cfg.l2_to_original else None
    dev = data.device
    step = 0
    clock = Stopwatch()
    per_epoch = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock)
    for _ in tqdm(range(cfg.epochs), desc="finetune", disable=not progress, leave=False):
        model.train()
        for rb in batches(split.retain, cfg.batch_size, gen):
            rb = rb.to(dev)
            loss = F.cross_entropy(model(data.x_train[rb]), data.y_train[rb])
            if anchor is not None:
                prox = sum((p - p0).pow(2).sum() for p, p0 in zip(model.parameters(), anchor))
                loss = loss + 0.5 * cfg.l2_to_original * prox
            step += 1
            optimizer_step(opt, loss, "finetune", step)
        per_epoch(model)
    model.eval()
    return model, Record("finetune", split.task, seconds=clock.stop(), passes=cfg.epochs, stopped="fixed",
                         hparams=asdict(cfg), extra={"steps": step, "forget_acc_per_epoch": per_epoch.points})
