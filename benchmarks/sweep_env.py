"""What Dask's nanny environment did to training speed: `benchmarks/train_loop.py` with and without
`MALLOC_TRIM_THRESHOLD_=65536` (the value a `distributed` nanny sets for its worker, and which a LocalCluster
wrote into the sweep's own environment before `cu.sweep` snapshotted it at import; README, "Sweeps").

glibc reads the variable when a process starts, so each measurement is a fresh process; the two settings
alternate (A, B, A, B, ...) so that a machine's load drifts over both alike. Compare the ratio of one run,
not the images/s of different runs.

    .venv/bin/python benchmarks/sweep_env.py [--data-root data] [--threads 1] [--repeats 3] [--steps 20] \
        [--out benchmarks/results/sweep_env_cpu.csv]
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LINE = re.compile(r"bare step: (\d+) img/s\s+training loop: (\d+) img/s")
SETTINGS = {"unset": None, "65536": "65536"}  # label -> MALLOC_TRIM_THRESHOLD_


def measure(trim: str | None, threads: int, steps: int, data_root: str | None) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    if trim is not None:
        env["MALLOC_TRIM_THRESHOLD_"] = trim
    cmd = [sys.executable, str(HERE / "train_loop.py"), "--steps", str(steps), "--repeats", "1"]
    if data_root:
        cmd += ["--data-root", data_root]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    m = LINE.search(out)
    if m is None:
        raise RuntimeError(f"train_loop.py printed no speed line:\n{out}")
    return float(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="measurements per setting, alternating")
    ap.add_argument("--steps", type=int, default=20, help="steps per measurement (train_loop.py --steps)")
    ap.add_argument("--out", default=str(HERE / "results" / "sweep_env_cpu.csv"))
    args = ap.parse_args()
    rows = []
    for r in range(args.repeats):
        for label, trim in SETTINGS.items():
            t = time.perf_counter()
            bare, loop = measure(trim, args.threads, args.steps, args.data_root)
            rows.append(dict(repeat=r, malloc_trim_threshold=label, threads=args.threads, steps=args.steps,
                             bare_img_s=bare, loop_img_s=loop))
            print(f"repeat {r} MALLOC_TRIM_THRESHOLD_={label:>6}: bare {bare:.0f} img/s, loop {loop:.0f} img/s "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for key in ("bare_img_s", "loop_img_s"):
        med = {lab: statistics.median(x[key] for x in rows if x["malloc_trim_threshold"] == lab) for lab in SETTINGS}
        print(f"{key}: median unset {med['unset']:.0f}, with 65536 {med['65536']:.0f}, "
              f"ratio unset/65536 {med['unset'] / med['65536']:.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
