r"""NegGrad+: descend on the retained data while ascending on the forget set (Kurmanji,
Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning", NeurIPS 2023, the
"NegGrad+" baseline). Class and sample unlearning.

    for epoch in 1..epochs:
        B^u_1..B^u_k = the batches of a seeded shuffle of D_tr^u
        for step t, retain batch (X^r, Y^r) of a seeded shuffle of D_tr^r:
            (X^u, Y^u) = B^u_{(t mod k) + 1}                        (the forget batches, cycled)
            theta <- SGD step on
                alpha * [ CE(F(X^r), Y^r) + (l2_to_original / 2) ||theta - theta_0||^2 ] - (1 - alpha) * CE(F(X^u), Y^u)

An epoch is one pass over D_tr^r; the forget batches repeat in the same order within it, as
`zip(train_loader, cycle(delete_loader))` does (`itertools.cycle` replays the batches of its first
pass), and are reshuffled each epoch. alpha = 1 is plain fine-tuning on D_tr^r; alpha = 0 is NegGrad.

Checked against meghdadk/SCRUB: the loss and the pairing in
`thirdparty/repdistiller/helper/loops.py::train_negrad` (`model.train()`; `loss = alpha*r_loss -
(1-alpha)*del_loss`, both batch-mean CE, one forward pass each), the optimiser in the notebooks'
`negative_grad` (`torch.optim.SGD(model.parameters(), lr=lr, weight_decay=0.0)`, no momentum, no
schedule). Two settings recur in their notebooks, RECIPES here; the default is RECIPES["scrub_large"]:

    scrub_large : their full CIFAR-10 run (`MIA_experiments.ipynb`, dataset cifar10, ResNet; the
                  same alpha in `large_scale_ictest.ipynb` on lacuna10): `ng_alpha = 0.9999`,
                  `ng_epochs = 5`, `ng_lr = 0.01`, retain batch `retain_bs = 32`, forget batch
                  `forget_bs = 16`, `train_negrad` (BatchNorm in train mode). The default, since
                  the paper's experiments are on full CIFAR-10 and SVHN.
    scrub_small : their small-scale runs (`small_scale_unlearning.ipynb` and
                  `small_scale_ictest.ipynb`): `ng_alpha = 0.95`, `ng_epochs = 10`, `ng_lr = 0.01`,
                  retain batch 128 (`args.batch_size`), forget batch `forget_bs = 64`, with their
                  `run_neggrad_epoch`, which freezes BatchNorm (`model.eval()`) and adds Golatkar's
                  `l2_penalty(model, model_init, args.weight_decay)` inside the alpha term, with
                  `--weight-decay 0.1` in that notebook's `main.py` call.

    cu.unlearners.run("neggrad_plus", original, data, split, **RECIPES["scrub_small"])

The often-quoted "0.95 CE(retain) - 0.05 CE(forget)" is the small-scale setting; at 0.9999 the
ascent weighs 1e-4 and NegGrad+ is close to fine-tuning on D_tr^r.

Deviations: no data augmentation (none in their runs either, `augment=False`); the batch orders
are seeded permutations. Record: `curve` is the forget accuracy on a fixed tracking subset every
`track_every` steps and after each epoch's last step (each step reads one forget batch, so the x axis
counts forget batches processed, as Figure 2 does); tracking runs outside the timed part but not free
in wall time (`track_size=0` turns it off).
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
from cu.unlearners.finetune import l2_to_start

# Overrides that select a setting (the default is "scrub_large"); see the module docstring.
RECIPES = {
    "scrub_large": dict(alpha=0.9999, epochs=5, lr=0.01, momentum=0.0, weight_decay=0.0, l2_to_original=0.0,
                        bn_train=True, retain_batch_size=32, forget_batch_size=16),
    "scrub_small": dict(alpha=0.95, epochs=10, lr=0.01, momentum=0.0, weight_decay=0.0, l2_to_original=0.1,
                        bn_train=False, retain_batch_size=128, forget_batch_size=64),
}


@dataclass(frozen=True)
class NegGradPlusConfig:
    alpha: float = 0.9999          # weight of CE on D_tr^r; 1 - alpha weighs -CE on D_tr^u (their ng_alpha)
    epochs: int = 5                # passes over D_tr^r (their ng_epochs)
    lr: float = 0.01               # SGD learning rate (their ng_lr)
    momentum: float = 0.0          # their optimiser: plain SGD
    weight_decay: float = 0.0      # weight_decay=0.0 in their optimiser
    l2_to_original: float = 0.0    # weight of (1/2)||theta - theta_0||^2 in the alpha term (small-scale: 0.1)
    bn_train: bool = True          # BatchNorm in train mode (train_negrad); False: eval mode (run_neggrad_epoch)
    retain_batch_size: int = 32    # their retain_bs
    forget_batch_size: int = 16    # their forget_bs
    track_size: int = 512          # forget samples on which the curve is tracked (0: off)
    track_every: int = 50          # a curve point every this many steps (and after the last): at batch 32 a
                                   # CIFAR-10 epoch is ~1,550 steps, and a point after each would cost more
                                   # than the method itself
    seed: int = 0


@register("neggrad_plus", config=NegGradPlusConfig, tasks=("sample", "class"))
def neggrad_plus(model: nn.Module, data: DeviceData, split: Split, cfg: NegGradPlusConfig,
                 progress: bool = False) -> tuple[nn.Module, Record]:
    if not 0.0 <= cfg.alpha <= 1.0:
        raise ValueError(f"neggrad_plus: alpha={cfg.alpha} must be in [0, 1] (1: fine-tune on D_tr^r only, "
                         f"0: NegGrad on D_tr^u only; their runs: 0.9999 or 0.95)")
    gen = set_seed(cfg.seed)
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    prox = l2_to_start(model, cfg.l2_to_original)
    dev = data.device
    step = 0
    clock = Stopwatch()
    curve = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock,
                        retain=split.test_retain)  # the loop thins the points
    for _ in tqdm(range(cfg.epochs), desc="neggrad_plus", disable=not progress, leave=False):
        # the retain order is drawn first, so that the first epoch's equals `finetune`'s with the same seed
        retain_batches = list(batches(split.retain, cfg.retain_batch_size, gen))
        forget_batches = list(batches(split.forget, cfg.forget_batch_size, gen))
        for t, rb in enumerate(retain_batches):
            model.train(cfg.bn_train)
            rb, fb = rb.to(dev), forget_batches[t % len(forget_batches)].to(dev)
            retain_loss = F.cross_entropy(model(data.x_train[rb]), data.y_train[rb])
            retain_loss = retain_loss + prox(model)
            forget_loss = F.cross_entropy(model(data.x_train[fb]), data.y_train[fb])
            loss = cfg.alpha * retain_loss - (1.0 - cfg.alpha) * forget_loss
            step += 1
            optimizer_step(opt, loss, "neggrad_plus", step)
            if step % max(1, cfg.track_every) == 0 or t == len(retain_batches) - 1:
                curve(model)
    model.eval()
    return model, Record("neggrad_plus", split.task, seconds=clock.stop(), passes=cfg.epochs, stopped="fixed",
                         curve=tuple(curve.points), hparams=asdict(cfg), extra={**curve.extra(), "steps": step})
