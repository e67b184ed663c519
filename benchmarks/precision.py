"""Training-step speed in float32 against bfloat16 autocast (issue #18, item 1), one process, interleaved.

The step is the training loop's: forward + cross-entropy + backward + SGD step (momentum 0.9, weight decay
5e-4) on one pre-built channels_last batch of the model's shape; bf16 runs the forward pass and the loss
under `torch.autocast(device, torch.bfloat16)` (weights, gradients and the optimiser stay float32). The
two precisions alternate, `--repeats` times each, so a change of the machine's load hits both; the figure
to read is the median ratio of images per second, bf16 / fp32, per thread count.

    .venv/bin/python benchmarks/precision.py [--threads 1 2] [--steps 10] [--repeats 5] [--width 16]
    .venv/bin/python benchmarks/precision.py --device cuda --width 64 --threads 0 --out benchmarks/results/precision_h200.csv

On a CPU, bf16 is fast only where the CPU computes it natively (AMX or AVX512-BF16; see `lscpu`); elsewhere
it can be slower than fp32. This measures speed only: whether bf16 changes a profile's accuracy within
seed noise needs a trained model of each (a profile run), not a benchmark.
"""
from __future__ import annotations

import argparse
import csv
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cu.models import build_model
from cu.runtime import get_device
from cu.training import sgd


def cpu_flags() -> str:
    """The CPU's bf16-relevant flags (Linux), for the record."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return ""
    return " ".join(sorted(f for f in flags.split() if "bf16" in f or f.startswith("amx") or f == "avx512f"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="steps per measurement")
    ap.add_argument("--repeats", type=int, default=5, help="measurements per precision and thread count")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU threads (0: leave as is)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="CSV to write one row per thread count")
    args = ap.parse_args()
    dev = get_device(args.device)
    torch.manual_seed(0)
    model = build_model(args.model, 10, 3, args.width).to(dev).to(memory_format=torch.channels_last)
    x = torch.randn(args.batch_size, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), device=dev)
    opt = sgd(model, 0.05, 0.9, 5e-4)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def speed(bf16: bool) -> float:
        sync()
        t = time.perf_counter()
        for _ in range(args.steps):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        return args.steps * args.batch_size / (time.perf_counter() - t)

    rows = []
    for threads in args.threads:
        if threads:
            torch.set_num_threads(threads)
        speed(False), speed(True)  # warm-up (oneDNN picks its kernels on first use)
        fp32, bf16 = [], []
        for _ in range(args.repeats):
            fp32.append(speed(False))
            bf16.append(speed(True))
        row = {"device": str(dev), "cpu": platform.processor() or platform.machine(), "cpu_flags": cpu_flags(),
               "threads": torch.get_num_threads(), "model": args.model, "width": args.width,
               "batch_size": args.batch_size, "fp32_img_s": round(statistics.median(fp32)),
               "bf16_img_s": round(statistics.median(bf16)),
               "ratio_bf16_fp32": round(statistics.median(b / f for b, f in zip(bf16, fp32)), 3)}
        rows.append(row)
        print(f"{dev} {args.model} w{args.width} batch {args.batch_size}, {row['threads']} threads: "
              f"fp32 {row['fp32_img_s']} img/s, bf16 autocast {row['bf16_img_s']} img/s, "
              f"ratio {row['ratio_bf16_fp32']:.2f}", flush=True)
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
