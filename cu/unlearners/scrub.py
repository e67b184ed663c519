r"""SCRUB: Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning",
NeurIPS 2023 (Algorithm 1). Class and sample unlearning.

    teacher F_o = a frozen copy of the Original (eval mode); student F = the model (train mode)
    d(x) = KL(softmax(F_o(x)/T) || softmax(F(x)/T)) * T^2        (their DistillKL, batch mean)
    for epoch in 1..epochs:
        lr = lr0 * lr_decay_rate ** #{m in lr_decay_epochs : epoch > m}
        if epoch <= msteps:                                        (max-steps)
            for each forget batch x of D_tr^u:  theta <- theta - lr * grad( -d(x) )
        for each retain batch (x, y) of D_tr^r:                    (min-steps)
            theta <- theta - lr * grad( gamma * CE(F(x), y) + alpha * d(x) )

One SGD optimiser (momentum 0.9, weight decay) serves both kinds of step, as in their code.

Defaults are those of the authors' large-scale CIFAR-10 runs (github meghdadk/SCRUB,
`large_scale_unlearning.ipynb`; the loop in `thirdparty/repdistiller/helper/loops.py::train_distill`,
the loss in `distiller_zoo/KD.py`, the schedule in `helper/util.py::adjust_learning_rate`):
kd_T 4, gamma 0.99, alpha 0.001, beta 0 (no other distillation term), SGD lr 5e-4, momentum 0.9,
weight decay 5e-4, forget batch 512, retain batch 256, msteps 2, 3 epochs, lr decay x0.1 after
epochs 3, 5, 9 (so no decay within the 3 epochs). Not implemented: the "rewinding" of SCRUB+R
(which picks an earlier epoch's checkpoint by the forget error on a validation set) and the
per-epoch evaluations their loop prints.

Record: `curve` is the forget accuracy on a fixed tracking subset after every optimiser step;
`extra["curve_phase"]` says which steps were max-steps (on forget batches) and which min-steps.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
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
class ScrubConfig:
    kd_T: float = 4.0                        # distillation temperature T
    gamma: float = 0.99                      # weight of CE on retain batches
    alpha: float = 0.001                     # weight of the KL to the teacher on retain batches
    lr: float = 5e-4                         # SGD learning rate (their sgda_learning_rate)
    momentum: float = 0.9                    # (their sgda_momentum)
    weight_decay: float = 5e-4               # (their sgda_weight_decay)
    forget_batch_size: int = 512             # batch of the max-steps
    retain_batch_size: int = 256             # batch of the min-steps
    msteps: int = 2                          # epochs that start with a max-step pass over D_tr^u
    epochs: int = 3                          # min-step passes over D_tr^r (their sgda_epochs)
    lr_decay_epochs: tuple[int, ...] = (3, 5, 9)  # lr *= lr_decay_rate for each milestone < epoch
    lr_decay_rate: float = 0.1
    track_size: int = 512                    # forget samples on which the curve is tracked (0: off)
    track_every: int = 1                     # record every k-th step of that curve (1: each; bounds its cost)
    seed: int = 0


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """KL(p_teacher || p_student) at temperature T, times T^2, averaged over the batch."""
    log_p_s = F.log_softmax(student_logits / T, dim=1)
    p_t = F.softmax(teacher_logits / T, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="sum") * T**2 / student_logits.shape[0]


@register("scrub", config=ScrubConfig, tasks=("class", "sample"))
def scrub(model: nn.Module, data: DeviceData, split: Split, cfg: ScrubConfig,
          progress: bool = False) -> tuple[nn.Module, Record]:
    gen = set_seed(cfg.seed)
    dev = data.device
    clock = Stopwatch()
    curve = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock,
                        retain=split.test_retain, every=cfg.track_every)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    step = 0
    losses = {"max": [], "min": []}

    def update(b: torch.Tensor, kind: str) -> None:
        nonlocal step
        b = b.to(dev)
        x = data.x_train[b]
        model.train()
        logits = model(x)
        with torch.no_grad():
            d_logits = teacher(x)
        kl = distill_kl(logits, d_logits, cfg.kd_T)
        if kind == "max":
            loss = -kl
        else:
            loss = cfg.gamma * F.cross_entropy(logits, data.y_train[b]) + cfg.alpha * kl
        step += 1
        optimizer_step(opt, loss, "scrub", step)
        losses[kind].append(loss.detach())
        curve(model, kind)

    bar = tqdm(total=cfg.epochs, desc="scrub", disable=not progress, leave=False)
    for epoch in range(1, cfg.epochs + 1):
        lr = cfg.lr * cfg.lr_decay_rate ** sum(epoch > m for m in cfg.lr_decay_epochs)
        for group in opt.param_groups:
            group["lr"] = lr
        if epoch <= cfg.msteps:
            for b in batches(split.forget, cfg.forget_batch_size, gen):
                update(b, "max")
        for b in batches(split.retain, cfg.retain_batch_size, gen):
            update(b, "min")
        bar.update(1)
    bar.close()
    model.eval()
    seconds = clock.stop()
    mean = lambda v: float(torch.stack(v).mean()) if v else float("nan")  # noqa: E731
    return model, Record("scrub", split.task, seconds=seconds, passes=cfg.epochs, stopped="fixed",
                         curve=tuple(curve.points), hparams=asdict(cfg),
                         extra={**curve.extra(), "steps": step, "forget_passes": min(cfg.msteps, cfg.epochs),
                                "curve_phase": curve.labels, "mean_max_loss": mean(losses["max"]),
                                "mean_min_loss": mean(losses["min"])})
