r"""Contrastive unlearning: Algorithm 1 of Lee, Zhang, Yang, Lou, Xiong, "Contrastive Unlearning:
A Contrastive Approach to Machine Unlearning".

    while the termination condition does not hold (checked after each pass over D_tr^u):
        for each forget batch X^u of D_tr^u (shuffled, seeded):
            repeat omega times:
                draw a retain batch (X^r, Y^r) at random from D_tr^r   (fresh draw every step)
                L = lambda_UL * L_UL(z(X^u), z(X^r)) + lambda_CE * CE(H(z(X^r)), Y^r)     (Eq. 7)
                theta <- theta - lr * grad L   (SGD with momentum)

L_UL is Eq. 5 for sample unlearning and Eq. 6 for class unlearning (`cu.losses`). X^u and X^r
go through the network in one forward pass in train mode, as in the authors' code.

Termination: class -> Acc(F', D_ts^u) <= 1/C (Eq. 8); sample -> Acc(F', D_eval^u) <=
Acc(F', D_eval^ts) (Eq. 9), with D_eval^u = D_tr^u (or a seeded subset of `eval_size`) and
D_eval^ts a seeded subset of `eval_size` test samples, as printed. The paper checks after each
pass; `check_every=k` also checks after every k forget batches, so the method can stop mid-pass;
`eq9_z` adds an optional statistical tolerance to Eq. 9 (see `termination`).
`max_passes` caps the loop; the record says whether the condition held or the cap was hit.

Defaults are the authors' (core/args/parse.py, README): tau 0.7, lambda_UL 3, lambda_CE 1,
omega 4, SGD lr 1e-3, momentum 0.9, no weight decay, batch 128 (64 for class unlearning), the
retain batch the size of the forget batch. Deviations from the authors' code that the paper
supports: retain batches are random draws (theirs are the same first omega*B retain samples for
every forget batch), and the loss is Eq. 5/6 as printed (see cu.losses).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from cu.data import DeviceData, Split, batches, sample
from cu.losses import contrastive_unlearning_loss
from cu.results import Record
from cu.runtime import set_seed
from cu.training import accuracy, sgd
from cu.unlearners import register
from cu.unlearners.common import ForgetCurve, Stopwatch, optimizer_step


@dataclass(frozen=True)
class ContrastiveConfig:
    tau: float = 0.7                 # temperature of s_ij = z_i . z_j / tau
    lambda_ul: float = 3.0           # weight of L_UL (authors' CT_ratio)
    lambda_ce: float = 1.0           # weight of CE on the retain batch (CE_ratio)
    omega: int = 4                   # retain batches (optimiser steps) per forget batch
    lr: float = 1e-3                 # SGD learning rate
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int | None = None    # forget batch; None -> 64 (class) / 128 (sample)
    retain_batch_size: int | None = None  # None -> the forget batch size (the paper's B)
    max_passes: int = 30             # cap on passes over D_tr^u (authors' README: 30 for samples)
    check_every: int = 0             # also test the condition every k forget batches (0: end of pass only)
    eval_size: int = 1000            # |D_eval^ts| (and cap on |D_eval^u|) for Eq. 9
    eq9_z: float = 0.0               # Eq. 9 with a tolerance of z standard errors (0: as printed)
    track_size: int = 512            # forget samples on which the per-batch curve is tracked (0: off)
    track_every: int = 1             # record every k-th step of that curve (1: each; bounds its cost)
    seed: int = 0


def termination(model: nn.Module, data: DeviceData, split: Split, eval_u: torch.Tensor,
                eval_ts: torch.Tensor, z: float = 0.0) -> tuple[bool, dict]:
    """Eq. 8 (class) or Eq. 9 (sample); returns (holds, the accuracies it compared).

    With z > 0, Eq. 9 becomes Acc(D_eval^u) <= Acc(D_eval^ts) + z * SE, SE the standard error of the
    difference of two accuracies on |D_eval^u| and |D_eval^ts| samples. A Retrain model, for which
    forget and test samples are equally unseen, satisfies it with probability about Phi(z); Eq. 9 as
    printed (z = 0) it satisfies only about half the time, so z = 0 pushes methods below Retrain.
    """
    if split.task == "class":
        acc = accuracy(model, data, "test", split.test_forget)
        return acc <= 1.0 / split.num_classes, {"acc_eval_forget": acc}
    acc_u = accuracy(model, data, "train", eval_u)
    acc_ts = accuracy(model, data, "test", eval_ts)
    p = (acc_u * len(eval_u) + acc_ts * len(eval_ts)) / (len(eval_u) + len(eval_ts))
    se = math.sqrt(max(p * (1 - p), 0.0) * (1 / len(eval_u) + 1 / len(eval_ts)))
    return acc_u <= acc_ts + z * se, {"acc_eval_forget": acc_u, "acc_eval_test": acc_ts}


@register("contrastive", config=ContrastiveConfig, tasks=("class", "sample"))
def contrastive(model: nn.Module, data: DeviceData, split: Split, cfg: ContrastiveConfig,
                progress: bool = False) -> tuple[nn.Module, Record]:
    gen = set_seed(cfg.seed)
    single = split.task == "class"
    bs = cfg.batch_size or (64 if single else 128)
    rbs = cfg.retain_batch_size or bs
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    eval_gen = torch.Generator().manual_seed(cfg.seed + 1)
    eval_u = sample(split.forget, cfg.eval_size, eval_gen).sort().values
    eval_ts = sample(split.test, cfg.eval_size, eval_gen).sort().values
    dev = data.device
    checks, step, n_batches = [], 0, 0
    stopped, passes = "max_passes", 0
    clock = Stopwatch()
    curve = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock,
                        retain=split.test_retain, every=cfg.track_every)
    bar = tqdm(total=cfg.max_passes, desc="contrastive", disable=not progress, leave=False)
    for passes in range(1, cfg.max_passes + 1):
        holds = False
        for xb in batches(split.forget, bs, gen):
            model.train()
            xb = xb.to(dev)
            for _ in range(cfg.omega):
                rb = sample(split.retain, rbs, gen).to(dev)
                x = torch.cat([data.x_train[xb], data.x_train[rb]])
                logits, z = model.forward_both(x)
                z_u, z_r = z[: len(xb)], z[len(xb):]
                l_ul = contrastive_unlearning_loss(z_u, data.y_train[xb], z_r, data.y_train[rb], cfg.tau, single)
                l_ce = F.cross_entropy(logits[len(xb):], data.y_train[rb])
                loss = cfg.lambda_ul * l_ul + cfg.lambda_ce * l_ce
                step += 1
                optimizer_step(opt, loss, "contrastive", step)
            n_batches += 1
            curve(model)
            if cfg.check_every and n_batches % cfg.check_every == 0:
                holds, acc = termination(model, data, split, eval_u, eval_ts, cfg.eq9_z)
                checks.append({"batch": n_batches, **acc})
                if holds:
                    break
        if not holds and not (cfg.check_every and n_batches % cfg.check_every == 0):
            # the paper's check, after the pass (unless the last forget batch was just checked)
            holds, acc = termination(model, data, split, eval_u, eval_ts, cfg.eq9_z)
            checks.append({"batch": n_batches, **acc})
        bar.update(1)
        if holds:
            stopped = "condition"
            break
    bar.close()
    model.eval()
    return model, Record("contrastive", split.task, seconds=clock.stop(), passes=passes, stopped=stopped,
                         curve=tuple(curve.points), hparams={**asdict(cfg), "batch_size": bs, "retain_batch_size": rbs},
                         extra={**curve.extra(), "forget_batches": n_batches, "steps": step, "checks": checks})
