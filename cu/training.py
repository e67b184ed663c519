"""The one training loop, accuracy on index sets, and the cached Original / Retrain models.

Recipe (the paper, Sec. 5.1): cross-entropy, SGD with momentum and weight decay, cosine learning
rate schedule over all steps, no data augmentation (only normalisation). Batches are seeded
permutations of an index set; the model and data live on one device.

Training resumes: given a `resume` file, `train` writes its whole state there (weights, optimiser
momentum, schedule position, the batch generator's state, history) after every epoch, atomically, and a
later call with the same file and recipe continues from the last finished epoch, batch for batch as if
it had not stopped (same machine). `train_cached` keeps that file beside the checkpoint it will write
(`<key>.partial.pt`) and removes it once the checkpoint is stored, so a killed Original or Retrain loses
at most one epoch.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from cu.checkpoints import CheckpointError, cached, checkpoint_path, code_fingerprint
from cu.data import DeviceData, batches
from cu.models import build_model
from cu.runtime import as_int, atomic_write, set_seed

RESUME_FORMAT = "cu-train-state-v1"


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe. Defaults are the `default` profile's (digits)."""

    epochs: int = 30          # passes over the training index set
    lr: float = 0.05          # peak SGD learning rate, per batch of `batch_size`
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "seed"):
            object.__setattr__(self, name, as_int(getattr(self, name), name))
        for name in ("lr", "momentum", "weight_decay"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {self}")


def sgd(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def _resume_config(cfg: TrainConfig, idx: torch.Tensor) -> dict:
    """What a resume file must have been written for: the recipe and the training index set."""
    return {"recipe": asdict(cfg), "n": len(idx), "idx_hash": hashlib.sha256(idx.cpu().numpy().tobytes()).hexdigest()[:16]}


def _load_resume(path: Path, cfg: TrainConfig, idx: torch.Tensor) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not ours
        raise CheckpointError(f"{path} cannot be read as a training state ({type(err).__name__}: "
                              f"{str(err)[:200]}); delete it and the training starts from epoch 1.") from err
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{path} is not a {RESUME_FORMAT} file; delete it and the training starts from epoch 1.")
    if json.loads(state["config"]) != json.loads(json.dumps(_resume_config(cfg, idx))):
        raise CheckpointError(f"{path} was written for another recipe or index set ({state['config']}); "
                              f"delete it and the training starts from epoch 1.")
    return state


def train(model: nn.Module, data: DeviceData, idx: torch.Tensor, cfg: TrainConfig,
          eval_idx: torch.Tensor | None = None, progress: bool = True, desc: str = "train",
          resume: str | Path | None = None) -> dict:
    """Train `model` in place on training samples `idx` with recipe `cfg`.

    Returns a history dict of per-epoch lists: train_loss, train_acc (running, over the epoch's
    batches), test_acc (on test indices `eval_idx`, when given) and seconds (cumulative, training only).
    `resume`: a file for the training state after each epoch; when it exists (written for this recipe
    and `idx`), training continues after its last epoch instead of starting again. The caller removes it.
    """
    gen = set_seed(cfg.seed)
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    steps_per_epoch = math.ceil(len(idx) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    hist = {"epoch": [], "train_loss": [], "train_acc": [], "test_acc": [], "seconds": []}
    elapsed, start = 0.0, 0
    resume = Path(resume) if resume is not None else None
    if resume is not None and resume.exists():
        state = _load_resume(resume, cfg, idx)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        hist, start = json.loads(state["history"]), int(state["epoch"])
        elapsed = hist["seconds"][-1] if hist["seconds"] else 0.0
        print(f"{desc}: resuming after epoch {start} of {cfg.epochs} from {resume}", flush=True)
    bar = tqdm(range(start, cfg.epochs), desc=desc, disable=not progress, leave=False,
               initial=start, total=cfg.epochs)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=data.device)
        correct = torch.zeros((), device=data.device, dtype=torch.long)
        for b in batches(idx, cfg.batch_size, gen):
            b = b.to(data.device, non_blocking=True)
            x, y = data.x_train[b], data.y_train[b]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            # accumulate on device: no host sync per step
            loss_sum += loss.detach() * len(b)
            correct += (logits.detach().argmax(1) == y).sum()
        loss_v = float(loss_sum) / len(idx)
        if not math.isfinite(loss_v):
            raise FloatingPointError(f"{desc}: training loss became {loss_v} in epoch {epoch + 1}; "
                                     f"lower the learning rate (lr={cfg.lr})")
        elapsed += time.perf_counter() - t0
        hist["epoch"].append(epoch + 1)
        hist["train_loss"].append(loss_v)
        hist["train_acc"].append(float(correct) / len(idx))
        hist["test_acc"].append(accuracy(model, data, "test", eval_idx) if eval_idx is not None else float("nan"))
        hist["seconds"].append(elapsed)
        bar.set_postfix(loss=f"{loss_v:.3f}", test=f"{hist['test_acc'][-1]:.3f}")
        if resume is not None:
            state = {"format": RESUME_FORMAT, "config": json.dumps(_resume_config(cfg, idx)), "epoch": epoch + 1,
                     "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "generator": gen.get_state(), "history": json.dumps(hist)}
            atomic_write(resume, lambda tmp: torch.save(state, tmp))
    model.eval()
    return hist


@torch.no_grad()
def predict(model: nn.Module, data: DeviceData, part: str, idx: torch.Tensor | None = None,
            batch_size: int = 1024, embed: bool = False) -> torch.Tensor:
    """Logits (or embeddings z when embed=True) of `part` ('train'/'test') restricted to `idx`."""
    was_training = model.training
    model.eval()
    x, _ = data.subset(part, idx)
    fn = model.embed if embed else model
    out = [fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    if not out:
        return torch.empty(0, model.num_classes if not embed else 128, device=data.device)
    return torch.cat(out)


def accuracy(model: nn.Module, data: DeviceData, part: str, idx: torch.Tensor | None = None) -> float:
    """Top-1 accuracy in [0, 1] on `part` restricted to `idx` (nan for an empty set)."""
    _, y = data.subset(part, idx)
    if len(y) == 0:
        return float("nan")
    return float((predict(model, data, part, idx).argmax(1) == y).float().mean())


def per_class_accuracy(model: nn.Module, data: DeviceData, part: str = "test") -> list[float]:
    """Accuracy of each class on `part`, in class order."""
    _, y = data.subset(part)
    pred = predict(model, data, part).argmax(1)
    return [float((pred[y == c] == c).float().mean()) if (y == c).any() else float("nan")
            for c in range(data.num_classes)]


def model_config(dataset: str, model: str, width: int, num_classes: int, in_channels: int,
                 recipe: TrainConfig, trained_on: str = "all", code: tuple[str, ...] = ("cu.training",)) -> dict:
    """The configuration that names a trained model in the checkpoint cache: what it was trained on,
    with which recipe, and a fingerprint of the code that trained it (`code` and its `cu` imports)."""
    return {"dataset": dataset, "model": model, "width": as_int(width, "width"), "num_classes": num_classes,
            "in_channels": in_channels, "recipe": asdict(recipe), "trained_on": trained_on,
            "code": code_fingerprint(*code)}


def train_cached(data: DeviceData, model_name: str, width: int, in_channels: int, recipe: TrainConfig,
                 idx: torch.Tensor | None = None, trained_on: str = "all",
                 cache_dir: str | Path | None = "checkpoints", progress: bool = True,
                 code: tuple[str, ...] = ("cu.training",)) -> tuple[nn.Module, dict]:
    """Train (or load from `cache_dir`) a model on training indices `idx` (all when None).

    `trained_on` names the index set in the cache key ('all' for the Original; a split's name for
    Retrain); `code` names the modules whose source (with their `cu` imports) enters the key.
    Returns (model in eval mode on data's device, history). cache_dir=None disables caching.
    With a cache, the training's state after each epoch is kept in `<checkpoint>.partial.pt` until the
    checkpoint is written: a killed run called again resumes after its last finished epoch.
    """
    idx = torch.arange(len(data.y_train)) if idx is None else idx
    cfg = model_config(data.name, model_name, width, data.num_classes, in_channels, recipe, trained_on, code)
    partial = None if cache_dir is None else checkpoint_path(cache_dir, cfg).with_suffix(".partial.pt")

    def fresh():
        set_seed(recipe.seed)
        return build_model(model_name, data.num_classes, in_channels, width).to(data.device)

    def fit(model):
        return train(model, data, idx, recipe, eval_idx=torch.arange(len(data.y_test)), progress=progress,
                     desc=f"{model_name}-w{width} on {data.name} ({trained_on})", resume=partial)

    model, hist = cached(cache_dir, cfg, fresh, fit)
    if partial is not None:
        partial.unlink(missing_ok=True)
    return model.eval(), hist
