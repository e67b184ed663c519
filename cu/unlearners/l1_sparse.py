r"""l1-sparse: fine-tune the Original on the retained data with an l1 penalty on all weights whose
coefficient decays linearly over the epochs (Jia, Liu, Ram, Yao, Liu, Liu, Sharma, Liu, "Model
Sparsity Can Simplify Machine Unlearning", NeurIPS 2023, "sparsity-aware unlearning"; the
"l1-sparse" baseline of SalUn). Class and sample unlearning.

    for epoch e = 0..epochs-1:
        gamma_e = alpha * (1 - e / (epochs - no_l1_epochs))   if e < epochs - no_l1_epochs
                  alpha                                        if no_l1_epochs == epochs
                  0                                            otherwise
        for each batch (X^r, Y^r) of a seeded shuffle of D_tr^r:
            theta <- SGD step (lr, momentum, weight decay) on  CE(F(X^r), Y^r) + gamma_e * ||theta||_1

||theta||_1 sums |w| over every parameter of the model (conv, BatchNorm and linear weights and
biases). With the default no_l1_epochs = 0 the coefficient is alpha in the first epoch and
alpha / epochs in the last; it never reaches 0. D_tr^u is never read (only the optional tracking
of its accuracy after each epoch, outside the timed part).

Checked against OPTML-Group/Unlearn-Sparse (commit 80ba55d, 2024-03-12): `unlearn/FT.py::FT_iter`
with `with_l1=True` (`FT_l1`), non-ImageNet branch (`model.train()`, `current_alpha` as above,
`loss += current_alpha * l1_regularization(model)`, `l1_regularization` =
`torch.linalg.norm(torch.cat([p.view(-1) for p in model.parameters()]), ord=1)`); `unlearn/FT_prune.py`
(the README's "l1-sparse" method: `FT_l1`, then a sparsity report and a test pass, no pruning on a
dense model); `unlearn/impl.py::_iterative_unlearn_impl` (`torch.optim.SGD(lr=args.unlearn_lr,
momentum=args.momentum, weight_decay=args.weight_decay)`, a MultiStepLR at 91,136 that never fires
within 10 epochs); `arg_parser.py` (`--momentum` 0.9, `--weight_decay` 5e-4, `--batch_size` 256,
`--no-l1-epochs` 0); README command `--unlearn FT_prune --num_indexes_to_replace 4500 --alpha
${alpha} --unlearn_lr 0.01 --unlearn_epochs 10`. OPTML-Group/Unlearn-Saliency's
`Classification/unlearn/FT.py` has the same loss and schedule, except that with no_l1_epochs =
epochs it gives 0 where Unlearn-Sparse gives alpha (the second line above, followed here).

alpha: their README leaves it open (`${alpha}`); the arg_parser default 0.2 is shared with the
Fisher baselines and would swamp the cross-entropy (0.2 * ||theta||_1 of a ResNet-18). The default
1e-4 is the value in the CIFAR-10 (and SVHN) l1-sparse commands of JingWu321/Scissorhands, a
follow-up built on the SalUn code; the paper's own value was not checked here.

Deviations: no data augmentation (their retain loader keeps random crop and flip unless `--no-aug`);
the retain order is a seeded permutation per epoch.
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
from cu.training import sgd
from cu.unlearners import register
from cu.unlearners.common import ForgetCurve, Stopwatch, optimizer_step


@dataclass(frozen=True)
class L1SparseConfig:
    alpha: float = 1e-4           # l1 coefficient in the first epoch (README: ${alpha}; see the docstring)
    no_l1_epochs: int = 0         # final epochs without the penalty (their --no-l1-epochs)
    epochs: int = 10              # passes over D_tr^r (README: --unlearn_epochs 10)
    lr: float = 0.01              # SGD learning rate per batch (README: --unlearn_lr 0.01)
    momentum: float = 0.9         # (their --momentum)
    weight_decay: float = 5e-4    # (their --weight_decay), on top of the l1 term
    batch_size: int = 256         # retain batch (their --batch_size)
    track_size: int = 512         # forget samples whose accuracy is logged after each epoch (0: off)
    seed: int = 0


def l1_coefficient(alpha: float, epoch: int, epochs: int, no_l1_epochs: int = 0) -> float:
    """gamma_e, the l1 coefficient during epoch `epoch` (counted from 0) of `epochs`, as in their FT_iter."""
    active = epochs - no_l1_epochs
    if epoch < active:
        return alpha * (1 - epoch / active)
    if active == 0:
        return alpha
    return 0.0


def l1_norm(model: nn.Module) -> torch.Tensor:
    """||theta||_1 over every parameter of the model."""
    return sum(p.abs().sum() for p in model.parameters())


def l1_sparse_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, coefficient: float) -> torch.Tensor:
    """The minimised loss: batch-mean CE(F(x), y) + coefficient * ||theta||_1."""
    loss = F.cross_entropy(model(x), y)
    return loss + coefficient * l1_norm(model) if coefficient else loss


@register("l1_sparse", config=L1SparseConfig, tasks=("class", "sample"))
def l1_sparse(model: nn.Module, data: DeviceData, split: Split, cfg: L1SparseConfig,
              progress: bool = False) -> tuple[nn.Module, Record]:
    if not 0 <= cfg.no_l1_epochs <= cfg.epochs:
        raise ValueError(f"l1_sparse: no_l1_epochs={cfg.no_l1_epochs} must be between 0 and epochs={cfg.epochs} "
                         f"(their --no-l1-epochs, default 0)")
    gen = set_seed(cfg.seed)
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    dev = data.device
    step = 0
    coefficients = []
    clock = Stopwatch()
    per_epoch = ForgetCurve(data, split.forget, cfg.track_size, cfg.seed, clock)
    for epoch in tqdm(range(cfg.epochs), desc="l1_sparse", disable=not progress, leave=False):
        gamma = l1_coefficient(cfg.alpha, epoch, cfg.epochs, cfg.no_l1_epochs)
        coefficients.append(gamma)
        model.train()
        for rb in batches(split.retain, cfg.batch_size, gen):
            rb = rb.to(dev)
            loss = l1_sparse_loss(model, data.x_train[rb], data.y_train[rb], gamma)
            step += 1
            optimizer_step(opt, loss, "l1_sparse", step)
        per_epoch(model)
    model.eval()
    return model, Record("l1_sparse", split.task, seconds=clock.stop(), passes=cfg.epochs, stopped="fixed",
                         hparams=asdict(cfg), extra={"steps": step, "l1_coefficients": coefficients,
                                                     "forget_acc_per_epoch": per_epoch.points})
