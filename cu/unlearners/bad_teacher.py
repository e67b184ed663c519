r"""Bad Teacher ("blindspot" unlearning): Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching
Induce Forgetting? Unlearning in Deep Networks Using an Incompetent Teacher", AAAI 2023
(arXiv 2205.08096). Class and sample unlearning.

    student S = a copy of the Original (train mode); competent teacher T_c = the frozen Original;
    incompetent teacher T_d = a freshly, randomly initialised model of the same architecture (seeded);
    both teachers in eval mode.
    pool = D_tr^u (l = 1) + a random fraction `retain_fraction` of D_tr^r (l = 0), shuffled batches;
    p_t(x) = softmax(T_d(x) / T) if l(x) = 1 else softmax(T_c(x) / T)
    L(batch) = 1/(B C) * sum_{x in batch} sum_c p_t(x)_c * ( log p_t(x)_c - log_softmax(S(x) / T)_c )
    for epoch in 1..epochs: for each batch: Adam step on L

that is KL(p_teacher || p_student) at temperature T, averaged over the B x C elements (F.kl_div's
`reduction="mean"`, so the batch-mean KL divided by the number of classes C) and without a T^2
factor, as in the original. The student is pulled to the random teacher's outputs on D_tr^u and
to the Original's on the retained samples.

Checked against the authors' code: github vikram2000b/bad-teaching-unlearning, `unlearn.py`
(`UnlearnerLoss`: `labels * u_teacher_out + (1 - labels) * f_teacher_out`, `F.kl_div(log_softmax
(output / KL_temperature), overall_teacher_out)` with the default mean reduction; `unlearning_step`;
`blindspot_unlearner`: teachers `.eval()`, the student left as it is, `DataLoader(UnLearningData,
batch_size, shuffle=True)`, Adam), `dataset.py::UnLearningData` (forget items labelled 1, retain
0) and `CIFARSuper20_Rocket_Unlearn.ipynb` (`unlearning_teacher = ResNet18(pretrained=False)`,
`retain_train_subset = random.sample(retain_train, int(0.3 * len(retain_train)))`, KL_temperature 1,
Adam lr 1e-4, epochs 1, batch 256); and the copy in github if-loops/selective-synaptic-dampening
(`src/unlearn.py`, identical; `src/forget_full_class_strategies.py::blindspot` and
`src/forget_random_strategies.py::blindspot`, the same settings for full-class and random-sample
forgetting on CIFAR with ResNet18: T 1, Adam lr 1e-4, 30 % of D_tr^r, 1 epoch, batch 256 (128 only
for the ViT); the student `deepcopy(model)` of a freshly built, loaded model, hence in train mode;
the incompetent teacher `getattr(models, args.net)(num_classes)`, a fresh random initialisation).

Defaults = those settings: kl_temperature 1, Adam lr 1e-4 (betas and eps at torch's defaults, no
weight decay), retain_fraction 0.3, epochs 1, batch 256. Same for both tasks.

Deviations:
  * The incompetent teacher is `cu.models.build_model(**original.arch)` with torch seeded by
    `seed + TEACHER_SEED_OFFSET` (theirs: the second model their main script builds after
    `torch.manual_seed(args.seed)`, the first being the Original's container). The offset keeps it
    from being the Original's own initialisation, which `cu.training` draws with the plain seed. One
    seed gives one teacher; the retain subset and the batch order come from the run's generator.
  * The retain subset is a seeded draw of int(retain_fraction * |D_tr^r|) training indices (theirs:
    Python's `random.sample`, seeded by their main script).
  * Inputs are normalised with this project's per-dataset statistics; no augmentation in either.

Record: `curve` is the forget accuracy on a fixed tracking subset after every optimiser step;
`extra` holds `steps`, `retain_subset` (|subset of D_tr^r|), `pool` (|D_tr^u| + that) and `mean_loss`.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from cu.data import DeviceData, Split, batches, sample
from cu.models import build_model
from cu.results import Record
from cu.runtime import set_seed
from cu.unlearners import register
from cu.unlearners.common import ForgetCurve, Stopwatch, optimizer_step


# The incompetent teacher's torch seed is seed + this: cu.training builds the Original right after
# set_seed(seed), so the plain seed would hand back the Original's own initial weights.
TEACHER_SEED_OFFSET = 104_729


@dataclass(frozen=True)
class BadTeacherConfig:
    kl_temperature: float = 1.0      # T of both teachers' and the student's softmax (theirs: 1)
    lr: float = 1e-4                 # Adam learning rate, per batch of 256
    retain_fraction: float = 0.3     # share of D_tr^r drawn into the pool (theirs: 30 %)
    epochs: int = 1                  # passes over the pool
    batch_size: int = 256            # mixed forget / retain batches
    track_size: int = 512            # forget samples on which the curve is tracked (0: off)
    track_every: int = 1             # record every k-th step of that curve (1: each; bounds its cost)
    seed: int = 0                    # incompetent teacher, retain subset, batch order


def bad_teacher_loss(student_logits: torch.Tensor, competent_logits: torch.Tensor, incompetent_logits: torch.Tensor,
                     is_forget: torch.Tensor, T: float) -> torch.Tensor:
    """KL(p_teacher || p_student) at temperature T, averaged over all B x C elements (F.kl_div's 'mean');
    the teacher is the incompetent one where `is_forget`, the competent one elsewhere."""
    w = is_forget.to(student_logits.dtype).unsqueeze(1)
    p_t = w * F.softmax(incompetent_logits / T, dim=1) + (1 - w) * F.softmax(competent_logits / T, dim=1)
    log_p_s = F.log_softmax(student_logits / T, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="sum") / student_logits.numel()


def incompetent_teacher(model: nn.Module, seed: int) -> nn.Module:
    """A freshly initialised model of `model`'s architecture (seeded), frozen, in eval mode, on its device."""
    arch = getattr(model, "arch", None)
    if arch is None:
        raise ValueError("bad_teacher needs the Original's architecture (`model.arch`, set by cu.models.build_model) "
                         "to build the randomly initialised teacher; build the Original with build_model")
    with torch.random.fork_rng(devices=[]):  # leaves the global RNG as it was
        torch.manual_seed(seed + TEACHER_SEED_OFFSET)
        teacher = build_model(**arch)
    teacher.arch = dict(arch)
    dev = next(model.parameters()).device
    return teacher.to(dev).eval().requires_grad_(False)


@register("bad_teacher", config=BadTeacherConfig, tasks=("class", "sample"))
def bad_teacher(model: nn.Module, data: DeviceData, split: Split, cfg: BadTeacherConfig,
                progress: bool = False) -> tuple[nn.Module, Record]:
    gen = set_seed(cfg.seed)
    dev = data.device
    clock = Stopwatch()
    curve = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock,
                        retain=split.test_retain, every=cfg.track_every)
    competent = copy.deepcopy(model).eval().requires_grad_(False)
    incompetent = incompetent_teacher(model, cfg.seed)
    sub = sample(split.retain, int(cfg.retain_fraction * len(split.retain)), gen).sort().values
    pool = torch.cat([split.forget, sub])
    is_forget_pool = torch.arange(len(pool)) < len(split.forget)  # D_tr^u first, then the retain subset
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step = 0
    losses = []
    bar = tqdm(total=cfg.epochs, desc="bad_teacher", disable=not progress, leave=False)
    for _ in range(cfg.epochs):
        for b in batches(torch.arange(len(pool)), cfg.batch_size, gen):
            idx = pool[b].to(dev)
            x = data.x_train[idx]
            with torch.no_grad():
                c_logits, i_logits = competent(x), incompetent(x)
            model.train()
            loss = bad_teacher_loss(model(x), c_logits, i_logits, is_forget_pool[b].to(dev), cfg.kl_temperature)
            step += 1
            optimizer_step(opt, loss, "bad_teacher", step)
            losses.append(loss.detach())
            curve(model)
        bar.update(1)
    bar.close()
    model.eval()
    seconds = clock.stop()
    return model, Record("bad_teacher", split.task, seconds=seconds, passes=cfg.epochs, stopped="fixed",
                         curve=tuple(curve.points), hparams=asdict(cfg),
                         extra={**curve.extra(), "steps": step, "retain_subset": len(sub), "pool": len(pool),
                                "mean_loss": float(torch.stack(losses).mean()) if losses else float("nan")})
