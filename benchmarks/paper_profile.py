"""Time the paper profile (full-width ResNets, the authors' recipe) and check the CUDA path.

    python benchmarks/paper_profile.py --device cuda [--models resnet18 resnet50] [--out timing.csv]

1. CUDA path: the default profile end to end on the device (digits Original, contrastive class and
   sample unlearning, Retrain) with the accuracies it reaches.
2. Speed of the paper profile on CIFAR-shaped data (random pixels: a step's time does not depend on
   them): images/s of the training loop at batch 256 and of contrastive unlearning steps (forget batch 64
   + retain batch 64), from which it projects the wall time of one CIFAR-10 training epoch, of the paper's
   100-epoch Original/Retrain and of one contrastive pass over a 5,000-sample class (79 batches, omega 4).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

import cu.unlearners as U
from cu.data import Dataset, class_split, random_split
from cu.datasets import load_dataset
from cu.experiment import evaluate
from cu.models import build_model
from cu.runtime import get_device
from cu.training import TrainConfig, train, train_cached


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def cuda_path(dev):
    data = load_dataset("digits").to(dev)
    t = time.perf_counter()
    original, _ = train_cached(data, "resnet18", 16, 1, TrainConfig(), cache_dir=None, progress=False)
    sync(dev)
    print(f"digits Original on {dev}: {time.perf_counter() - t:.1f} s, test acc "
          f"{evaluate(original, data, random_split(data, 100))['acc_test']:.3f}")
    for split in (class_split(data, 5), random_split(data, 100)):
        for name, kw in (("contrastive", {"lr": 1e-2}), ("retrain", {"cache_dir": None})):
            model, rec = U.run(name, original, data, split, **kw)
            acc = {k: round(v, 3) for k, v in evaluate(model, data, split).items()}
            print(f"  {split.task:6s} {name:12s} {rec.seconds:6.1f} s passes {rec.passes} {rec.stopped:10s} {acc}")


def speed(dev, model_name, width, steps):
    rng = np.random.default_rng(0)
    n = 256 * steps
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    data = Dataset("cifar-shaped", x, y, x[:512], y[:512], tuple(map(str, range(10)))).to(dev)
    model = build_model(model_name, 10, 3, width).to(dev)
    cfg = TrainConfig(epochs=1, lr=0.1, weight_decay=1e-4, batch_size=256)
    train(model, data, torch.arange(512), cfg, progress=False)  # warm-up
    sync(dev)
    t = time.perf_counter()
    train(model, data, torch.arange(n), cfg, progress=False)
    sync(dev)
    train_ips = n / (time.perf_counter() - t)
    # contrastive: forget batch 64 of one class, omega 4 retain batches of 64 per forget batch
    y_cls = torch.zeros(n, dtype=torch.long)
    y_cls[: n // 10] = 5
    data2 = Dataset("cifar-shaped", x, y_cls.numpy(), x[:512], y[:512], tuple(map(str, range(10)))).to(dev)
    split = class_split(data2, 5)
    nb = max(2, (n // 10) // 64)
    U.run("contrastive", model, data2, split, max_passes=1, track_size=0)  # warm-up
    sync(dev)
    t = time.perf_counter()
    _, rec = U.run("contrastive", model, data2, split, max_passes=1, track_size=0)
    sync(dev)
    per_batch = rec.seconds / rec.extra["forget_batches"]
    return {"model": model_name, "width": width, "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
            "train_img_per_s": round(train_ips), "cifar10_epoch_s": round(50000 / train_ips, 1),
            "original_100_epochs_min": round(100 * 50000 / train_ips / 60, 1),
            "contrastive_s_per_forget_batch": round(per_batch, 4),
            "contrastive_pass_79_batches_s": round(79 * per_batch, 1), "forget_batches_timed": nb}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet34", "resnet50", "resnet101"])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40, help="training steps of 256 timed per model")
    ap.add_argument("--out", default=None, help="CSV to write the timings to")
    args = ap.parse_args()
    dev = get_device(args.device)
    torch.backends.cudnn.benchmark = True
    cuda_path(dev)
    rows = []
    for m in args.models:
        rows.append(speed(dev, m, args.width, args.steps))
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    if args.out:
        df.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
