r"""NegGrad: gradient ascent on the forget set (Golatkar, Achille, Soatto, "Eternal Sunshine of
the Spotless Net: Selective Forgetting in Deep Networks", CVPR 2020, the "Negative gradient"
baseline; the paper's "Neggrad", Sec. 5.1: "applying gradient *ascent* using the classification
loss" on the unlearning samples only).

    while the termination condition does not hold and passes < max_passes:
        for each forget batch (X^u, Y^u) of D_tr^u (seeded shuffle):
            theta <- theta + lr * grad CE(F(X^u), Y^u)        (SGD on the loss -CE)

The loss is plain, unbounded -CE: neither public implementation clips or bounds it
(SelectiveForgetting's `run_train_epoch` only carries an unused `negative_gradient` flag;
meghdadk/SCRUB's `train_negrad` / `run_neggrad_epoch` is "NegGrad+", alpha * CE(retain) -
(1 - alpha) * CE(forget), a different method that also reads D_tr^r). Nothing stops the ascent
from wrecking the model except the stopping rule and `max_passes`.

Stopping: the paper does not give NegGrad's stopping rule; it reports that NegGrad "requires
more than 40 iterations to achieve unlearning effects" over D_tr^u (Sec. 5.3), which we read
as the termination condition of Contrastive Unlearning. So by default the condition is checked
after each pass exactly as for `contrastive` (Eq. 8 for class, Eq. 9 for sample unlearning, on
the same seeded D_eval), and `max_passes` = 50 caps the loop; `stop_when_unlearned=False` runs
all `max_passes` (the Golatkar and SCRUB code runs a fixed number of epochs, 10 in SCRUB).

Defaults: SGD lr 0.01, no momentum, no weight decay (the optimiser of the Golatkar / SCRUB
baselines, `torch.optim.SGD(lr=0.01, weight_decay=0)`), batch 128 (their `--batch-size`),
BatchNorm in train mode as in SCRUB's `train_negrad`. The curve is the accuracy on a fixed
subset of D_tr^u after every forget batch (Figure 2).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from cu.data import DeviceData, Split, batches, sample
from cu.results import Record
from cu.runtime import set_seed
from cu.training import sgd
from cu.unlearners import register
from cu.unlearners.common import ForgetCurve, Stopwatch, optimizer_step
from cu.unlearners.contrastive import termination


@dataclass(frozen=True)
class NegGradConfig:
    lr: float = 0.01                 # SGD step on -CE per forget batch (Golatkar / SCRUB baselines: 0.01)
    momentum: float = 0.0            # their optimiser: plain SGD
    weight_decay: float = 0.0
    batch_size: int = 128            # forget batch (--batch-size default 128)
    max_passes: int = 50             # cap on passes over D_tr^u (the paper: NegGrad needs > 40)
    stop_when_unlearned: bool = True  # check Eq. 8 / Eq. 9 after each pass, as for `contrastive`
    eval_size: int = 1000            # |D_eval^ts| (and cap on |D_eval^u|) for Eq. 9
    track_size: int = 512            # forget samples on which the per-batch curve is tracked (0: off)
    seed: int = 0


@register("neggrad", config=NegGradConfig, tasks=("sample", "class"))
def neggrad(model: nn.Module, data: DeviceData, split: Split, cfg: NegGradConfig,
            progress: bool = False) -> tuple[nn.Module, Record]:
    gen = set_seed(cfg.seed)
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    eval_gen = torch.Generator().manual_seed(cfg.seed + 1)  # the same D_eval as `contrastive`
    eval_u = sample(split.forget, cfg.eval_size, eval_gen).sort().values
    eval_ts = sample(split.test, cfg.eval_size, eval_gen).sort().values
    dev = data.device
    checks, step = [], 0
    stopped, passes = "max_passes", 0
    clock = Stopwatch()
    curve = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock)
    for passes in tqdm(range(1, cfg.max_passes + 1), desc="neggrad", disable=not progress, leave=False):
        for fb in batches(split.forget, cfg.batch_size, gen):
            model.train()
            fb = fb.to(dev)
            loss = -F.cross_entropy(model(data.x_train[fb]), data.y_train[fb])
            step += 1
            optimizer_step(opt, loss, "neggrad", step)
            curve(model)
        if cfg.stop_when_unlearned:
            holds, acc = termination(model, data, split, eval_u, eval_ts)
            checks.append({"pass": passes, **acc})
            if holds:
                stopped = "condition"
                break
    model.eval()
    return model, Record("neggrad", split.task, seconds=clock.stop(), passes=passes, stopped=stopped,
                         curve=tuple(curve.points), hparams=asdict(cfg), extra={"steps": step, "checks": checks})
