"""What Figure 2's tracking costs: wall time outside a method's own seconds, as a fraction of them.

Each class-unlearning method runs three times on the same CIFAR-shaped problem (ResNet-18, width 16, an
Original of random weights: the speed of a step does not depend on what the weights are): without
tracking (`track_size=0`), tracking every step (`track_every=1`) and every k-th (`--every`), each timed
from outside. Outside time = wall time - Record.seconds (what the method's stopwatch excludes: its
own checks as well as tracking); tracking overhead = (outside time - outside time without tracking) /
Record.seconds: the evaluation of the tracked forget and D_ts^r subsets (`track_size` each). A method's
`track_every` should keep it <= 20 % (issue: SCRUB's 578 s became ~14 min on cifar10-cpu).

    .venv/bin/python benchmarks/tracking_cost.py [--data-root data] [--n 3000] [--every 10]
        [--methods contrastive scrub unsir boundary_shrink] [--out benchmarks/results/tracking_cost.csv]

With --data-root, a seeded random n of CIFAR-10's training samples; without it (or without cifar10.npz
there) random CIFAR-shaped data; class 0 forgotten. Ratios are measured in one process, one method after another.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cu import unlearners
from cu.data import Dataset, class_split
from cu.datasets import load_dataset
from cu.models import build_model
from cu.runtime import get_device
from train_loop import cifar_like  # benchmarks/: random CIFAR-shaped data, shared with the loop benchmark


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--n", type=int, default=3000, help="training samples (random data) or a seeded random n of CIFAR-10's")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--track-size", type=int, default=512)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--methods", nargs="*", default=["contrastive", "scrub", "unsir", "boundary_shrink"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="CSV to write the rows to")
    args = ap.parse_args()
    dev = get_device(args.device)
    if args.data_root and (Path(args.data_root) / "cifar10.npz").is_file():
        full = load_dataset("cifar10", args.data_root)
        keep = np.random.default_rng(0).permutation(len(full.y_train))[: args.n]  # the npz is grouped by class
        ds = Dataset("cifar10", full.x_train[keep], full.y_train[keep], full.x_test, full.y_test, full.class_names)
    else:
        ds = cifar_like(args.n)
    data = ds.to(dev)
    split = class_split(data, 0)
    torch.manual_seed(0)
    original = build_model("resnet18", 10, 3, args.width).to(dev).eval()
    rows = []
    unlearners.run(args.methods[0], copy.deepcopy(original), data, split, track_size=0)  # warm-up, not timed
    for name in args.methods:
        outside0 = None
        for size, every in ((0, 1), (args.track_size, 1), (args.track_size, args.every)):
            t = time.perf_counter()
            _, rec = unlearners.run(name, copy.deepcopy(original), data, split, track_size=size, track_every=every)
            outside = time.perf_counter() - t - rec.seconds
            outside0 = outside if size == 0 else outside0
            rows.append({"method": name, "track_size": size, "track_every": every, "points": len(rec.curve),
                         "method_seconds": round(rec.seconds, 2), "outside_seconds": round(outside, 2),
                         "tracking_overhead": round((outside - outside0) / rec.seconds, 3)})
            print(", ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    df = pd.DataFrame(rows)
    print(f"device {dev}, {torch.get_num_threads()} threads, n {args.n}, width {args.width}, "
          f"track_size {args.track_size}\n{df.to_string(index=False)}")
    if args.out:
        df.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
