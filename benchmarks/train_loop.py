"""Training-loop overhead: images/s of `cu.training.train` divided by images/s of the bare step.

The bare step is forward + cross-entropy + backward + SGD step on one pre-built batch; the loop adds
the seeded index permutation, the batch gather from the in-memory tensors, the cosine schedule and
on-device metric accumulation. Both run in the same process, interleaved, on the same model shape.

    .venv/bin/python benchmarks/train_loop.py [--data-root data] [--steps 30] [--repeats 3]

Without --data-root (or without cifar10.npz there) it uses random CIFAR-shaped data: the speed of a
step does not depend on pixel values.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cu.data import Dataset
from cu.datasets import load_dataset
from cu.models import build_model
from cu.runtime import get_device
from cu.training import TrainConfig, sgd, train


def cifar_like(n: int) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    return Dataset("cifar10-random", x, y, x[:256], y[:256], tuple(str(i) for i in range(10)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30, help="steps per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = get_device(args.device)
    n = args.steps * args.batch_size
    if args.data_root and (Path(args.data_root) / "cifar10.npz").is_file():
        ds = load_dataset("cifar10", args.data_root)
    else:
        ds = cifar_like(n)
    data = ds.to(dev)
    torch.manual_seed(0)
    model = build_model(args.model, 10, 3, args.width).to(dev)
    idx = torch.arange(n)
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=args.batch_size)
    xb, yb = data.x_train[: args.batch_size], data.y_train[: args.batch_size]
    opt = sgd(model, 0.05, 0.9, 5e-4)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def bare():
        model.train()
        sync()
        t = time.perf_counter()
        for _ in range(args.steps):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        return n / (time.perf_counter() - t)

    def loop():
        sync()
        t = time.perf_counter()
        train(model, data, idx, cfg, progress=False)
        sync()
        return n / (time.perf_counter() - t)

    bare(), loop()  # warm-up
    b, lp = [], []
    for _ in range(args.repeats):
        b.append(bare())
        lp.append(loop())
    ratio = statistics.median(x / y for x, y in zip(lp, b))
    print(f"device {dev}, {args.model} width {args.width}, batch {args.batch_size}, {args.steps} steps x {args.repeats}")
    print(f"bare step: {statistics.median(b):.0f} img/s   training loop: {statistics.median(lp):.0f} img/s   "
          f"ratio loop/bare: {ratio:.3f}")


if __name__ == "__main__":
    main()
