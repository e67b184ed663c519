r"""NegGrad: gradient ascent on the forget set (Golatkar, Achille, Soatto, "Eternal Sunshine of
the Spotless Net: Selective Forgetting in Deep Networks", CVPR 2020, the "Negative gradient"
baseline; the paper's "Neggrad", Sec. 5.1: "applying gradient *ascent* using the classification
loss" on the unlearning samples only).

    for pass in 1..max_passes (unless stop_when_unlearned and the termination condition holds):
        for each forget batch (X^u, Y^u) of D_tr^u (seeded shuffle):
            theta <- SGD step on -CE(F(X^u), Y^u)          (momentum, weight decay)

The loss is plain, unbounded -CE: no public implementation clips or bounds it (Unlearn-Sparse's
`GA` below; AdityaGolatkar/SelectiveForgetting's `run_train_epoch` only carries an unused
`negative_gradient` flag). D_tr^r is never read: meghdadk/SCRUB's `train_negrad` is NegGrad+,
which also descends on D_tr^r, here `neggrad_plus`.

Budget. The paper does not give NegGrad's budget or stopping rule, and its Table 4 reports NegGrad
ending with a forget accuracy far above its test accuracy (92.6 vs 68.2 %), so it did not ascend
until Eq. 9 held; ascending that far wrecks the test accuracy. The default is therefore the
fixed budget of the gradient-ascent ("GA") baseline of OPTML-Group/Unlearn-Sparse (Jia et
al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023), checked against its code:
`unlearn/GA.py::GA` (`model.train()`, `loss = -criterion(output, target)` on
`data_loaders["forget"]`), `unlearn/impl.py::_iterative_unlearn_impl` (`torch.optim.SGD(lr=
args.unlearn_lr, momentum=args.momentum, weight_decay=args.weight_decay)`, a MultiStepLR at
`--decreasing_lr` 91,136 that never fires within 5 epochs, no warm-up at `--warmup` 0),
`arg_parser.py` (`--momentum` 0.9, `--weight_decay` 5e-4, `--batch_size` 256, which
`main_forget.py::replace_loader_dataset` gives the forget loader) and the README's GA command
(`--unlearn_lr 0.0001 --unlearn_epochs 5`). So: SGD lr 1e-4, momentum 0.9, weight decay 5e-4,
forget batch 256, 5 passes, BatchNorm in train mode, constant lr, `stopped="fixed"`.

RECIPES names the two budgets; the default is RECIPES["unlearn_sparse"]:

    unlearn_sparse : the fixed budget above (default)
    until_unlearned: the previous default of this module. The Golatkar / SCRUB optimiser (plain SGD
                     lr 0.01, no momentum or weight decay, batch 128) run until Contrastive
                     Unlearning's termination condition holds, checked after each pass exactly as
                     for `contrastive` (Eq. 8 for class, Eq. 9 for sample unlearning, on the same
                     seeded D_eval), with `max_passes` = 50 as a cap (the paper: NegGrad "requires
                     more than 40 iterations to achieve unlearning effects", Sec. 5.3);
                     `stopped` is "condition" or "max_passes".

    cu.unlearners.run("neggrad", original, data, split, **RECIPES["until_unlearned"])

Deviations from Unlearn-Sparse: no data augmentation (their CIFAR-10 forget loader keeps the
training transforms, random crop and flip, unless `--no-aug`; this project trains and unlearns
without augmentation, as the paper does); the forget order is a seeded permutation per pass. The
curve is the accuracy on a fixed subset of D_tr^u after every forget batch (Figure 2).
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

# Overrides that select a budget (the default is "unlearn_sparse"); see the module docstring.
RECIPES = {
    "unlearn_sparse": dict(lr=1e-4, momentum=0.9, weight_decay=5e-4, batch_size=256, max_passes=5,
                           stop_when_unlearned=False),
    "until_unlearned": dict(lr=0.01, momentum=0.0, weight_decay=0.0, batch_size=128, max_passes=50,
                            stop_when_unlearned=True),
}


@dataclass(frozen=True)
class NegGradConfig:
    lr: float = 1e-4                  # SGD step on -CE per forget batch (Unlearn-Sparse GA: --unlearn_lr 0.0001)
    momentum: float = 0.9             # (their --momentum)
    weight_decay: float = 5e-4        # (their --weight_decay)
    batch_size: int = 256             # forget batch (their --batch_size)
    max_passes: int = 5               # passes over D_tr^u: the budget, or the cap with stop_when_unlearned
    stop_when_unlearned: bool = False  # True: stop once Eq. 8 / Eq. 9 holds, checked after each pass
    eval_size: int = 1000             # |D_eval^ts| (and cap on |D_eval^u|) for Eq. 9
    track_size: int = 512             # forget samples on which the per-batch curve is tracked (0: off)
    track_every: int = 1              # record every k-th step of that curve (1: each; bounds its cost)
    seed: int = 0


@register("neggrad", config=NegGradConfig, tasks=("sample", "class"))
def neggrad(model: nn.Module, data: DeviceData, split: Split, cfg: NegGradConfig,
            progress: bool = False) -> tuple[nn.Module, Record]:
    gen = set_seed(cfg.seed)
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    if cfg.stop_when_unlearned:
        eval_gen = torch.Generator().manual_seed(cfg.seed + 1)  # the same D_eval as `contrastive`
        eval_u = sample(split.forget, cfg.eval_size, eval_gen).sort().values
        eval_ts = sample(split.test, cfg.eval_size, eval_gen).sort().values
    dev = data.device
    checks, step = [], 0
    stopped, passes = ("max_passes" if cfg.stop_when_unlearned else "fixed"), 0
    clock = Stopwatch()
    curve = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock,
                        retain=split.test_retain, every=cfg.track_every)
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
                         curve=tuple(curve.points), hparams=asdict(cfg), extra={**curve.extra(), "steps": step, "checks": checks})
