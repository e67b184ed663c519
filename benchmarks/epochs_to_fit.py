"""The fewest training epochs whose Original fits its training set (issue: the CPU profile in the
paper's regime).

The paper trains to convergence without augmentation, so its Originals fit their training set; the
`cifar10-cpu` profile should too. This trains the profile's Original (cosine schedule, no
augmentation, the profile's lr) for candidate epoch counts and records, for each, the eval-mode
accuracy on the whole training set and on the test set. The search starts at `--start` and walks
down the sorted candidates while the model fits (>= `--target`) and up while it does not, so it
trains as few models as it can to find the boundary among the candidates.

Every model goes through the notebooks' checkpoint cache (same key as notebook 01's), so the one
that is chosen is the profile's Original for that seed and is never trained twice.

    .venv/bin/python benchmarks/epochs_to_fit.py --data-root data --candidates 16 20 24 --start 20

Rows are appended to benchmarks/results/epochs_to_fit_<dataset>.csv (one per trained epoch count); an epoch
count already recorded there (same dataset, model, width, seed and lr) is read back instead of measured.
"""
from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path

import torch

from cu.experiment import prepare
from cu.training import TrainConfig, accuracy


def recorded(args) -> dict[int, dict]:
    """Rows of the results CSV for this dataset, model, width, seed and lr, by epoch count."""
    out = Path(args.out)
    if not out.exists():
        return {}
    with out.open() as f:
        return {int(r["epochs"]): r for r in csv.DictReader(f)
                if (r["dataset"], r["model"], int(r["width"]), int(r["seed"]), float(r["lr"]))
                == (args.dataset, args.model, args.width, args.seed, args.lr)}


def measure(args, epochs: int) -> dict:
    recipe = TrainConfig(epochs=epochs, lr=args.lr, momentum=0.9, weight_decay=5e-4, batch_size=128, seed=args.seed)
    t0 = time.perf_counter()
    _, data, model, hist = prepare(args.dataset, args.data_root, args.model, args.width, recipe, args.device,
                                   args.cache_dir, progress=args.progress)
    row = {"dataset": args.dataset, "model": args.model, "width": args.width, "seed": args.seed, "epochs": epochs,
           "lr": args.lr, "acc_train": round(accuracy(model, data, "train"), 5),
           "acc_test": round(accuracy(model, data, "test"), 5),
           "running_train_acc_last_epoch": round(hist["train_acc"][-1], 5),
           "train_seconds": round(hist["seconds"][-1], 1), "wall_seconds_this_call": round(time.perf_counter() - t0, 1),
           "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    print(f"epochs {epochs}: train {100 * row['acc_train']:.2f} %, test {100 * row['acc_test']:.2f} % "
          f"({row['train_seconds']} s of training)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with out.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", type=int, nargs="+", default=[16, 20, 24, 30])
    ap.add_argument("--start", type=int, default=20, help="first candidate to train")
    ap.add_argument("--target", type=float, default=0.995, help="training accuracy that counts as fitting")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cache-dir", default="checkpoints", help="the notebooks' cache (../checkpoints from notebooks/)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    args.out = args.out or f"benchmarks/results/epochs_to_fit_{args.dataset}.csv"
    cands = sorted(set(args.candidates) | {args.start})
    i = cands.index(args.start)
    fits: dict[int, bool] = {}
    known = recorded(args)  # an epoch count measured before is read back, not measured (nor appended) again
    while 0 <= i < len(cands) and cands[i] not in fits:
        e = cands[i]
        if e in known:
            print(f"epochs {e}: recorded in {args.out} (train {100 * float(known[e]['acc_train']):.2f} %)", flush=True)
        fits[e] = float((known[e] if e in known else measure(args, e))["acc_train"]) >= args.target
        i += -1 if fits[e] else 1
    ok = [e for e in cands if fits.get(e)]
    print(f"fewest epochs reaching {100 * args.target:.1f} % training accuracy among {cands}: "
          f"{min(ok) if ok else 'none'} (trained: {dict(sorted(fits.items()))})", flush=True)


if __name__ == "__main__":
    main()
