r"""Boundary Expanding: Chen, Gao, Liu, Peng, Wang, "Boundary Unlearning: Rapid Forgetting of Deep
Networks via Shifting the Decision Boundary", CVPR 2023 (Sec. 4.2). Class unlearning only.

    widen the last Linear W (C x d), b (C) to C + 1 outputs: rows 0..C-1 copied, row C (the
        shadow class) drawn fresh (Xavier-normal weight, zero bias)
    for epoch in 1..epochs:
        for each forget batch x of D_tr^u (shuffled, seeded):
            theta <- theta - lr * grad CE(F_wide(x), C)       (all parameters, SGD with momentum)
    prune the shadow row: W, b <- rows 0..C-1 of the widened layer

The forget samples are pushed into the shadow class; once its output is removed they scatter
over the remaining classes. The returned model has the Original's module structure and exactly
C outputs (the widened layer lives only during fine-tuning), so everything downstream works.

Defaults from the third-party mirror of the authors' code (github TY-LEE-KR/Boundary-Unlearning-Code,
`boundary_unlearning.py::boundary_expanding`, `models.py::init_params`, `main.py`): SGD lr 1e-5,
momentum 0.9, no weight decay, 10 passes over D_tr^u (`finetune_epochs`), batch 64, train mode,
shadow row initialised as their `init_params` does (Xavier-normal weight, zero bias). Their code
hard-codes C = 10 and a 96-wide AllCNN classifier; here the last Linear of `model.classifier` is
widened, whatever its size. Their loop computes the logits before calling `train()`, so their
very first batch goes through the feature extractor in eval mode (main.py evaluated the Original
just before); here every batch is in train mode.

As in their code, the fine-tuning runs in train mode on batches of the forgotten class alone, so
BatchNorm's running statistics are re-estimated on that one class. At lr 1e-5 this, rather than
the weight update, can be most of the effect. `lr=0.0` is supported as the ablation that
separates the two: SGD then leaves every parameter exactly as it was (the C real rows of the
widened layer included, so the pruned model has the Original's weights), and whatever
forgetting remains comes from the BatchNorm statistics alone. On the digits test Original
(tests/conftest.py, class 5, seed 0) lr 1e-5 and lr 0 gave the same accuracies on D_tr^u, D_ts^u
and D_ts^r: there all of the forgetting was the statistics'.

Record: `curve` is the forget accuracy of the pruned model (argmax over the C real classes) on a
fixed tracking subset after each forget batch (`extra["curve_retained"]`: its D_ts^r accuracy, the
same way); `extra["shadow_rate"]` is the fraction of the whole of D_tr^u that the widened model,
after the last step and before the shadow row is pruned, assigns to the shadow class (argmax over
C + 1 outputs, eval mode, i.e. with the running statistics the fine-tuning left).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from cu.data import DeviceData, Split, batches
from cu.results import Record
from cu.runtime import set_seed
from cu.training import predict, sgd
from cu.unlearners import register
from cu.unlearners.common import ForgetCurve, Stopwatch, optimizer_step


@dataclass(frozen=True)
class BoundaryExpansionConfig:
    lr: float = 1e-5           # SGD learning rate (their code); 0.0: only BatchNorm statistics change
    momentum: float = 0.9      # (their code)
    weight_decay: float = 0.0  # (their code: none)
    epochs: int = 10           # passes over D_tr^u (their finetune_epochs)
    batch_size: int = 64       # forget batch (their --batch_size default)
    track_size: int = 512      # forget samples on which the per-batch curve is tracked (0: off)
    track_every: int = 1       # record every k-th step of that curve (1: each; bounds its cost)
    seed: int = 0


def last_linear(model: nn.Module) -> nn.Linear:
    """The Linear layer that produces the logits: the last module of `model.classifier`."""
    head = getattr(model, "classifier", None)
    layer = head[-1] if isinstance(head, nn.Sequential) and len(head) else head
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"boundary_expansion widens the last Linear of model.classifier; this model's "
                        f"classifier ends in {type(layer).__name__}. Use a cu.models.build_model network.")
    return layer


def widened(layer: nn.Linear) -> nn.Linear:
    """`layer` with one extra output row (the shadow class), rows 0..C-1 copied from `layer`."""
    wide = nn.Linear(layer.in_features, layer.out_features + 1).to(layer.weight.device, layer.weight.dtype)
    nn.init.xavier_normal_(wide.weight)
    nn.init.zeros_(wide.bias)
    with torch.no_grad():
        wide.weight[:-1].copy_(layer.weight)
        wide.bias[:-1].copy_(layer.bias)
    return wide


def real_class_accuracy(model: nn.Module, data: DeviceData, idx: torch.Tensor, num_classes: int,
                        part: str = "train") -> float:
    """Accuracy on `part` with the shadow output ignored: what the pruned model would score."""
    logits = predict(model, data, part, idx)[:, :num_classes]
    y = (data.y_train if part == "train" else data.y_test)[idx.to(data.device)]
    return float((logits.argmax(1) == y).float().mean())


@register("boundary_expansion", config=BoundaryExpansionConfig, tasks=("class",))
def boundary_expansion(model: nn.Module, data: DeviceData, split: Split, cfg: BoundaryExpansionConfig,
                       progress: bool = False) -> tuple[nn.Module, Record]:
    gen = set_seed(cfg.seed)
    dev = data.device
    clock = Stopwatch()
    curve = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock,
                        lambda m, d, idx: real_class_accuracy(m, d, idx, c),
                        retain=split.test_retain, every=cfg.track_every,
                        measure_retained=lambda m, d, idx: real_class_accuracy(m, d, idx, c, "test"))
    narrow = last_linear(model)
    c = narrow.out_features
    wide = widened(narrow)
    model.classifier[-1] = wide
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    step = 0
    bar = tqdm(total=cfg.epochs, desc="boundary_expansion", disable=not progress, leave=False)
    for _ in range(cfg.epochs):
        for b in batches(split.forget, cfg.batch_size, gen):
            b = b.to(dev)
            model.train()
            logits = model(data.x_train[b])
            loss = F.cross_entropy(logits, torch.full((len(b),), c, device=dev))
            step += 1
            optimizer_step(opt, loss, "boundary_expansion", step)
            curve(model)
        bar.update(1)
    bar.close()
    with clock.paused():  # on all of D_tr^u, before pruning (module docstring)
        shadow_rate = float((predict(model, data, "train", split.forget).argmax(1) == c).float().mean())
    # prune: the shadow row goes, the C real rows go back into the Original's own Linear
    with torch.no_grad():
        narrow.weight.copy_(wide.weight[:c])
        narrow.bias.copy_(wide.bias[:c])
    model.classifier[-1] = narrow
    model.eval()
    return model, Record("boundary_expansion", split.task, seconds=clock.stop(), passes=cfg.epochs,
                         stopped="fixed", curve=tuple(curve.points), hparams=asdict(cfg),
                         extra={**curve.extra(), "steps": step, "shadow_rate": shadow_rate})
