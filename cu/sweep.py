"""Run the notebooks over a grid of parameters with papermill.

    python -m cu.sweep configs/sweeps/NAME.yaml [--jobs N] [--dry-run]

The sweep file names a base profile (`configs/<profile>.yaml`), the notebooks to run in order for
each grid point, the grid (parameter -> list of values; the product is taken) and fixed extra
parameters. Each grid point runs its notebooks in order into `runs/<profile>/<point>/`; a notebook
that finished before (its `.done` marker exists) is skipped, so an interrupted sweep resumes where it
stopped. A failed notebook is reported and ends its grid point; the other points go on. `--jobs N`
runs N grid points side by side (the results files are locked while they are written).
Afterwards it aggregates `results/<profile>/` into `tables.md` (cu.report).
"""
from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import yaml
from tqdm import tqdm

ROOT = Path.cwd()


def load_sweep(path: str | Path) -> dict:
    spec = yaml.safe_load(Path(path).read_text())
    for key in ("profile", "notebooks", "grid"):
        if key not in spec:
            raise ValueError(f"{path}: missing '{key}' (see configs/sweeps/default.yaml)")
    profile_file = ROOT / "configs" / f"{spec['profile']}.yaml"
    if not profile_file.exists():
        raise FileNotFoundError(f"{path}: profile file {profile_file} does not exist")
    for nb in spec["notebooks"]:
        if not (ROOT / "notebooks" / f"{nb}.ipynb").exists():
            raise FileNotFoundError(f"{path}: notebook notebooks/{nb}.ipynb does not exist")
    return spec


def points(spec: dict) -> list[dict]:
    names = list(spec["grid"])
    values = [v if isinstance(v, list) else [v] for v in spec["grid"].values()]
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def point_name(point: dict) -> str:
    return "_".join(f"{k.lower()}-{v}" for k, v in point.items()) or "base"


def run_point(spec: dict, point: dict, dry_run: bool = False) -> tuple[str, str]:
    """Run one grid point's notebooks in order; returns (point name, 'ok' | 'skipped' | error text)."""
    name = point_name(point)
    out_dir = ROOT / "runs" / spec["profile"] / name
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {**spec.get("parameters", {}), **point}
    status = "skipped"
    for nb in spec["notebooks"]:
        done = out_dir / f"{nb}.done"
        if done.exists():
            continue
        cmd = [sys.executable, "-m", "papermill", f"notebooks/{nb}.ipynb", str(out_dir / f"{nb}.ipynb"),
               "-f", f"configs/{spec['profile']}.yaml", "-y", yaml.safe_dump(params), "--cwd", "notebooks",
               "-k", "python3", "--no-progress-bar", "--log-output"]
        if dry_run:
            print(" ".join(cmd[:6]), "...", params)
            continue
        log = out_dir / f"{nb}.log"  # written as the notebook runs: `tail -f` it to follow a run
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            return name, f"{nb} failed (log: {log}): {' | '.join(tail)}"
        done.write_text("ok\n")
        status = "ok"
    return name, status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="a sweep file, e.g. configs/sweeps/default.yaml")
    ap.add_argument("--jobs", type=int, default=1, help="grid points run side by side")
    ap.add_argument("--dry-run", action="store_true", help="print the runs without executing them")
    args = ap.parse_args()
    spec = load_sweep(args.sweep)
    grid = points(spec)
    failed = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_point, spec, p, args.dry_run) for p in grid]
        bar = tqdm(as_completed(futures), total=len(futures), desc=f"sweep {spec['profile']}", disable=args.dry_run)
        for fut in bar:
            name, status = fut.result()
            bar.write(f"{name}: {status}")
            if status not in ("ok", "skipped"):
                failed.append((name, status))
    if not args.dry_run:
        from cu.report import markdown

        folder = ROOT / "results" / spec["profile"]
        if folder.exists():
            (folder / "tables.md").write_text(markdown(folder))
            print(f"tables: {folder / 'tables.md'}")
    if failed:
        print(f"{len(failed)} of {len(grid)} grid points failed:")
        for name, status in failed:
            print(f"  {name}: {status}")
        sys.exit(1)


if __name__ == "__main__":
    main()
