r"""Random labels ("RL"): fine-tune the Original on the forget set with random labels and on the
retained set with its true labels. The "RL" baseline of Fan, Liu, Zhang, Wong, Wei, Liu, "SalUn:
Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image Classification and
Generation", ICLR 2024 (and of Jia et al., "Model Sparsity Can Simplify Machine Unlearning",
NeurIPS 2023). Class and sample unlearning (their `--class_to_replace` / `--num_indexes_to_replace`).

    for epoch in 1..epochs:
        for each batch X^u of a seeded shuffle of D_tr^u:
            Y~ ~ Uniform{0, ..., C-1}, one label per sample, drawn afresh for every batch of every epoch
            theta <- SGD step (lr, momentum, weight decay) on CE(F(X^u), Y~)
        for each batch (X^r, Y^r) of a seeded shuffle of D_tr^r:
            theta <- SGD step on CE(F(X^r), Y^r)

The random label ranges over all C classes, the true one included (a forget sample keeps its label
with probability 1/C). All forget batches come first, then all retain batches, one SGD step each:
the forget and retain losses are never summed in one step (a maintainer confirms the sequential
update in OPTML-Group/Unlearn-Saliency issue #21).

Checked against OPTML-Group/Unlearn-Saliency (commit a6e89fd, 2026-02-28):
`Classification/unlearn/RL.py::RL`, branch `args.dataset == "cifar10" or "svhn"` (`model.train()`;
`for image, target in forget_loader: target = torch.randint(0, args.num_classes, target.shape)`, one
step; then `for image, target in retain_loader:`, one step); `unlearn/impl.py::_iterative_unlearn_impl`
(`torch.optim.SGD(lr=args.unlearn_lr, momentum=args.momentum, weight_decay=args.weight_decay)`, a
MultiStepLR at `--decreasing_lr` 91,136 that never fires within 10 epochs, no warm-up at `--warmup` 0);
`arg_parser.py` (`--unlearn_lr` 0.01, `--unlearn_epochs` 10, `--batch_size` 256 for both loaders,
`--momentum` 0.9, `--weight_decay` 5e-4); `main_forget.py` runs RL without a saliency mask. No README
command gives RL's own learning rate (for a later paper the same group searched RL's in [1e-4, 1e-1]
over 10 epochs, OPTML-Group/Unlearn-WorstCase issue #1), so the default is the arg_parser's 0.01;
SalUn's CIFAR-10 command (RL plus a mask) uses 0.013, see `salun`.

`mix` selects how the two sets are iterated (both are in their code):

    forget_then_retain : the CIFAR-10 / SVHN branch above (default).
    shuffled           : the CIFAR-100 / TinyImageNet branch of the same function, and Unlearn-Sparse's
                         `unlearn/RL.py` (commit 48d335e, deleted before their release): D_tr^u with
                         labels drawn once per epoch (`np.random.randint(0, num_classes, ...)`),
                         concatenated with D_tr^r and shuffled together (`ConcatDataset`,
                         `shuffle=True`), so a batch mixes relabelled forget and retain samples.

    cu.unlearners.run("random_label", original, data, split, mix="shuffled")

Deviations: no data augmentation (their CIFAR-10 loaders keep random crop and flip unless
`--no-aug`); batch orders and random labels come from one seeded generator (theirs from the global
NumPy / torch state); the shuffled forget and retain loaders are reshuffled every epoch as theirs are.
Record: `curve` is the forget accuracy on a fixed tracking subset every `track_every` steps and
after each epoch's last step; tracking is outside the timed part (`track_size=0` turns it off).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

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

MIXES = ("forget_then_retain", "shuffled")


@dataclass(frozen=True)
class RandomLabelConfig:
    epochs: int = 10              # passes over D_tr^u and D_tr^r (their --unlearn_epochs)
    lr: float = 0.01              # SGD learning rate per batch (their --unlearn_lr default; no published RL value)
    momentum: float = 0.9         # (their --momentum)
    weight_decay: float = 5e-4    # (their --weight_decay)
    batch_size: int = 256         # forget and retain batches alike (their --batch_size)
    mix: str = "forget_then_retain"  # or "shuffled": see the module docstring
    track_size: int = 512         # forget samples on which the curve is tracked (0: off)
    track_every: int = 50         # a curve point every this many steps (and after each epoch's last)
    seed: int = 0


def random_labels(n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """n labels drawn uniformly from all `num_classes` classes (the true class included), as
    `torch.randint(0, args.num_classes, target.shape)` in their RL.py."""
    return torch.randint(0, num_classes, (n,), generator=generator)


def epoch_steps(split: Split, y_train: torch.Tensor, num_classes: int, batch_size: int, mix: str,
                generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of RL as a list of steps (training-set indices, targets), targets on y_train's device.
    Forget samples get `random_labels`, retained ones their true labels; `mix` orders them."""
    if mix not in MIXES:
        raise ValueError(f"mix={mix!r}: expected one of {', '.join(MIXES)} (see cu.unlearners.random_label)")
    dev = y_train.device
    if mix == "forget_then_retain":
        forget_batches = list(batches(split.forget, batch_size, generator))
        steps = [(fb, random_labels(len(fb), num_classes, generator).to(dev)) for fb in forget_batches]
        steps += [(rb, y_train[rb.to(dev)]) for rb in batches(split.retain, batch_size, generator)]
        return steps
    idx = torch.cat([split.forget, split.retain])
    targets = torch.cat([random_labels(len(split.forget), num_classes, generator).to(dev),
                         y_train[split.retain.to(dev)]])
    return [(idx[pos], targets[pos.to(dev)])
            for pos in batches(torch.arange(len(idx)), batch_size, generator)]


def train_with_random_labels(model: nn.Module, data: DeviceData, split: Split, cfg, generator: torch.Generator,
                             step: Callable[[torch.Tensor, int], None], curve: ForgetCurve, method: str,
                             progress: bool = False) -> int:
    """The RL loop shared with `salun`: `step(loss, step_number)` applies one update. Returns the steps taken."""
    n = 0
    for _ in tqdm(range(cfg.epochs), desc=method, disable=not progress, leave=False):
        steps = epoch_steps(split, data.y_train, data.num_classes, cfg.batch_size, cfg.mix, generator)
        for t, (idx, targets) in enumerate(steps):
            model.train()
            loss = F.cross_entropy(model(data.x_train[idx.to(data.device)]), targets)
            n += 1
            step(loss, n)
            if n % max(1, cfg.track_every) == 0 or t == len(steps) - 1:
                curve(model)
    return n


@register("random_label", config=RandomLabelConfig, tasks=("class", "sample"))
def random_label(model: nn.Module, data: DeviceData, split: Split, cfg: RandomLabelConfig,
                 progress: bool = False) -> tuple[nn.Module, Record]:
    gen = set_seed(cfg.seed)
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    clock = Stopwatch()
    curve = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock,
                        retain=split.test_retain)  # the loop thins the points
    steps = train_with_random_labels(model, data, split, cfg, gen,
                                     lambda loss, n: optimizer_step(opt, loss, "random_label", n), curve,
                                     "random_label", progress)
    model.eval()
    return model, Record("random_label", split.task, seconds=clock.stop(), passes=cfg.epochs, stopped="fixed",
                         curve=tuple(curve.points), hparams=asdict(cfg), extra={**curve.extra(), "steps": steps})
