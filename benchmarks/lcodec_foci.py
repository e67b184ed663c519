"""LCODEC's FOCI selection and whole scrubs: cache-sized distance blocks against the earlier 64 MB blocks.

FOCI (cu/unlearners/lcodec.py) finds, for every candidate unit and greedy step, each perturbation's nearest
neighbour among n_perturbations others: (units, n, n) squared distances and an argmin over them, about 93 % of
a scrub's time on a CPU. `_nearest` now makes them a few columns at a time (~1 MB, in cache) and takes
`torch.min(dim).indices`; the earlier code made ~64 MB blocks and called argmin. Both return the same indices
(checked here on the real features). The two versions alternate, `--repeats` times each, in one process.

    .venv/bin/python benchmarks/lcodec_foci.py [--threads 1] [--repeats 3] [--samples 4] [--out CSV]

Features: one forget sample of the digits profile's seed-0 Original (ResNet-18 width 16), perturbed
n_perturbations = 200 times (the method's default), one feature per Conv2d filter and Linear output.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch

import cu.unlearners as U
import cu.unlearners.lcodec as L
from cu.data import Split, random_split
from cu.datasets import load_dataset
from cu.training import TrainConfig, train_cached


def nearest_64mb(cols: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
    """The earlier `_nearest`: 64 MB blocks, argmin (base's diagonal is overwritten with +inf either way)."""
    n, q = cols.shape
    step = max(1, (1 << 24) // (n * n))
    out = []
    for s in range(0, q, step):
        z = cols[:, s:s + step].T
        d = (z[:, :, None] - z[:, None, :]).pow_(2)
        if base is not None:
            d += base
        d.diagonal(dim1=1, dim2=2).fill_(float("inf"))
        out.append(d.argmin(dim=2))
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=4, help="forget samples (scrubs) in the whole-run timing")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lcodec_foci_cpu.csv"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("digits").to("cpu")
    original, _ = train_cached(data, "resnet18", 16, 1, TrainConfig(), cache_dir="checkpoints", progress=False)
    split = random_split(data, 100)
    cfg = U.make_config("lcodec")
    i = split.forget[:1]
    feats, losses, _ = L.unit_features(original, data.x_train[i], data.y_train[i], cfg.n_perturbations,
                                       cfg.perturb_std, torch.Generator().manual_seed(0), cfg.chunk)
    few = Split(split.task, split.forget[:args.samples], split.retain, split.test_forget, split.test_retain,
                split.num_classes)
    current = L._nearest
    versions = {"64 MB blocks, argmin (before)": nearest_64mb, "1 MB blocks, min (now)": current}
    times = {(k, what): [] for k in versions for what in ("foci", "run")}
    chosen = {}
    try:
        for _ in range(args.repeats):
            for name, fn in versions.items():
                L._nearest = fn
                t = time.perf_counter()
                chosen[name] = L.foci(feats, losses, cfg.max_selected)[0]
                times[(name, "foci")].append(time.perf_counter() - t)
                t = time.perf_counter()
                U.run("lcodec", original, data, few, track_size=0)
                times[(name, "run")].append(time.perf_counter() - t)
    finally:
        L._nearest = current
    same = len({tuple(c) for c in chosen.values()}) == 1
    before, now = versions
    rows = []
    for what, label in (("foci", "FOCI of one scrub"), ("run", f"LCODEC, {args.samples} scrubs")):
        b, a = statistics.median(times[(before, what)]), statistics.median(times[(now, what)])
        rows.append({"what": label, "units": feats.shape[1], "n_perturbations": feats.shape[0],
                     "threads": args.threads, "seconds_before": round(b, 3), "seconds_now": round(a, 3),
                     "speedup": round(b / a, 2), "same_selection": same, "repeats": args.repeats})
        print(rows[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
