r"""SalUn: random-label unlearning restricted to the weights most salient for the forget loss (Fan,
Liu, Zhang, Wong, Wei, Liu, "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency
in Both Image Classification and Generation", ICLR 2024). Class and sample unlearning.

    g   = | sum over batches B of a seeded partition of D_tr^u of  grad_theta [ -CE(F(X_B), Y_B) ] |   at theta_0,
          BatchNorm in eval mode (each term the gradient of a batch mean)
    m_i = 1 for the k = floor(mask_fraction * N) largest g_i over all N parameters of the model
          (one global ranking: conv, BatchNorm and linear weights and biases alike), else 0
    then `random_label`'s loop (forget batches with uniform random labels, then retain batches), each step
        grad <- m * grad;  theta <- SGD step (lr, momentum, weight decay);
        theta <- m * theta + (1 - m) * theta_0;  momentum buffer <- m * momentum buffer

so a weight outside the mask ends exactly where it started, theta_u = m * (theta_0 + Delta) + (1 - m) * theta_0:
the paper's saliency-masked update (the paper thresholds |g| at a value gamma; the code keeps a fraction).
BatchNorm running statistics are buffers, not parameters: they still move.

Checked against OPTML-Group/Unlearn-Saliency (commit a6e89fd, 2026-02-28):
`Classification/generate_mask.py::save_gradient_ratio` (`model.eval()`; `loss = - criterion(output,
target)` on `data_loaders["forget"]`, gradients summed over its batches, then `torch.abs_`; one
ranking of `torch.cat` over all `named_parameters`, `threshold_index = int(len(all_elements) * i)`,
a weight is kept when its rank is below it; masks saved for i = 0.1, ..., 1.0);
`Classification/unlearn/RL.py::RL` with a mask (`_apply_mask_to_grads` before `optimizer.step()`,
then `_restore_masked_params`: weights outside the mask reset to their value at the start of the
epoch and their momentum zeroed); `unlearn/impl.py` and `arg_parser.py` as in `random_label`
(SGD, momentum 0.9, weight decay 5e-4, batch 256, constant learning rate). Defaults: the
Classification README's CIFAR-10 command, `main_random.py --unlearn RL --unlearn_epochs 10
--unlearn_lr 0.013 --num_indexes_to_replace 4500 --mask_path mask/with_0.5.pt` (mask fraction 0.5;
its mask comes from `generate_mask.py` at the default `--batch_size` 256).

Masking semantics. Until commit a6e89fd ("Fix weight decay (#33)", 2026) RL.py only multiplied the
gradients by the mask, so SGD's weight decay (added inside `optimizer.step()`) and the momentum it
feeds still shrank the weights outside the mask: the code as released with the paper. The default
follows the fixed code and the paper's masked update (`freeze_unmasked=True`);
`freeze_unmasked=False` is the earlier code.

Deviations: no data augmentation (their loaders for the mask and for unlearning keep random crop and
flip unless `--no-aug`); the mask's batch partition is a seeded shuffle from its own generator
(seed + 1), so with `mask_fraction=1` SalUn takes exactly `random_label`'s steps; ties in the
saliency are broken by position (a stable sort) where theirs use an unstable `argsort`; the mask is
computed inside the run and timed with it (theirs is a separate script).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from cu.data import DeviceData, Split, batches
from cu.results import Record
from cu.runtime import set_seed
from cu.training import sgd
from cu.unlearners import register
from cu.unlearners.common import ForgetCurve, Stopwatch, check_finite
from cu.unlearners.random_label import MIXES, train_with_random_labels


@dataclass(frozen=True)
class SalUnConfig:
    mask_fraction: float = 0.5    # share of all weights that may move (their mask/with_0.5.pt for CIFAR-10)
    freeze_unmasked: bool = True  # True: weights outside the mask stay exactly at theta_0 (their fixed code,
                                  # the paper's update); False: only their gradients are masked (their code before #33)
    epochs: int = 10              # passes over D_tr^u and D_tr^r (README: --unlearn_epochs 10)
    lr: float = 0.013             # SGD learning rate per batch (README CIFAR-10: --unlearn_lr 0.013)
    momentum: float = 0.9         # (their --momentum)
    weight_decay: float = 5e-4    # (their --weight_decay)
    batch_size: int = 256         # mask, forget and retain batches (their --batch_size)
    mix: str = "forget_then_retain"  # as random_label's: their CIFAR-10 / SVHN branch
    track_size: int = 512         # forget samples on which the curve is tracked (0: off)
    track_every: int = 50         # a curve point every this many steps (and after each epoch's last)
    seed: int = 0


def saliency(model: nn.Module, data: DeviceData, forget: torch.Tensor, batch_size: int,
             generator: torch.Generator) -> dict[str, torch.Tensor]:
    """|sum over forget batches of grad(-CE batch mean)| per parameter, BatchNorm in eval mode."""
    params = dict(model.named_parameters())
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    was_training = model.training
    model.eval()
    dev = data.device
    for fb in batches(forget, batch_size, generator):
        fb = fb.to(dev)
        loss = -F.cross_entropy(model(data.x_train[fb]), data.y_train[fb])
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (name, _), g in zip(params.items(), grads):
            if g is not None:
                total[name] += g
    model.train(was_training)
    return {name: t.abs() for name, t in total.items()}


def top_fraction(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """0/1 masks (float, shaped like the scores) keeping the floor(fraction * N) largest of all N scores,
    ranked together; ties go to the earlier position."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = int(len(flat) * fraction)
    keep = torch.zeros(len(flat), dtype=flat.dtype, device=flat.device)
    keep[torch.argsort(flat, descending=True, stable=True)[:k]] = 1.0
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = keep[start:start + s.numel()].view_as(s)
        start += s.numel()
    return masks


def salun_mask(model: nn.Module, data: DeviceData, split: Split, cfg: SalUnConfig) -> dict[str, torch.Tensor]:
    """The mask a SalUn run with `cfg` uses on `model` (its own seeded batch partition of D_tr^u)."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    return top_fraction(saliency(model, data, split.forget, cfg.batch_size, gen), cfg.mask_fraction)


class MaskedStep:
    """One SGD step that moves only masked weights: the gradient is multiplied by the mask and, with
    `freeze`, weights outside it are reset to their start values and their momentum is zeroed after the step."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, mask: dict[str, torch.Tensor], freeze: bool,
                 method: str = "salun"):
        self.opt, self.freeze, self.method = opt, freeze, method
        self.params = [(p, mask[name]) for name, p in model.named_parameters()]
        # only tensors that have weights outside the mask need resetting
        self.anchors = [(p, m, p.detach().clone()) for p, m in self.params if freeze and not bool(m.all())]

    def __call__(self, loss: torch.Tensor, step: int) -> None:
        check_finite(loss, self.method, step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        for p, m in self.params:
            if p.grad is not None:
                p.grad.mul_(m)
        self.opt.step()
        with torch.no_grad():
            for p, m, p0 in self.anchors:
                p.mul_(m).add_(p0 * (1.0 - m))
                buf = self.opt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(m)


@register("salun", config=SalUnConfig, tasks=("class", "sample"))
def salun(model: nn.Module, data: DeviceData, split: Split, cfg: SalUnConfig,
          progress: bool = False) -> tuple[nn.Module, Record]:
    if not 0.0 < cfg.mask_fraction <= 1.0:
        raise ValueError(f"salun: mask_fraction={cfg.mask_fraction} must be in (0, 1] (the share of weights "
                         f"that may move; their CIFAR-10 run: 0.5)")
    if cfg.mix not in MIXES:
        raise ValueError(f"salun: mix={cfg.mix!r}: expected one of {', '.join(MIXES)}")
    gen = set_seed(cfg.seed)
    clock = Stopwatch()
    t0 = time.perf_counter()
    mask = salun_mask(model, data, split, cfg)
    mask_seconds = time.perf_counter() - t0
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    curve = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock,
                        retain=split.test_retain)  # the loop thins the points
    step = MaskedStep(model, opt, mask, cfg.freeze_unmasked)
    steps = train_with_random_labels(model, data, split, cfg, gen, step, curve, "salun", progress)
    model.eval()
    kept = int(sum(m.sum().item() for m in mask.values()))
    total = sum(m.numel() for m in mask.values())
    return model, Record("salun", split.task, seconds=clock.stop(), passes=cfg.epochs, stopped="fixed",
                         curve=tuple(curve.points), hparams=asdict(cfg),
                         extra={**curve.extra(), "steps": steps, "mask_fraction": kept / total, "masked_weights": kept,
                                "total_weights": total, "mask_seconds": mask_seconds})
