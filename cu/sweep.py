"""Run the notebooks over a grid of parameters with papermill.

    python -m cu.sweep configs/sweeps/NAME.yaml [--jobs N] [--threads T] [--dry-run]

The sweep file names a base profile (`configs/<profile>.yaml`), the notebooks of each grid point, the
grid (parameter -> list of values; the product is taken) and fixed extra parameters. Each grid point
runs its notebooks into `runs/<profile>/<point>/`; a notebook that finished before (its `.done` marker
exists) is skipped, so an interrupted sweep resumes where it stopped. A failed notebook is reported and
ends what depends on it in its grid point; everything else goes on.

Scheduling is per notebook, not per grid point: a notebook may start once the notebooks it needs (in
the same grid point) have finished. By default each notebook needs the one before it; the optional
`after` mapping declares what a notebook needs instead, e.g.

    after: {03_sample_unlearning: [01_training], 04_mia: [02_class_unlearning, 03_sample_unlearning]}

lets 02 and 03 run side by side once 01 (which trains the Original they share) is done. `--jobs N` runs
up to N notebooks at once, always the first ready one in grid order (an earlier grid point finishes
before a later one starts taking workers); `--threads T` sets OMP_NUM_THREADS/MKL_NUM_THREADS of each
notebook's process (on a CPU, jobs x threads should not exceed the cores). The results files are locked
while they are written. Afterwards it aggregates `results/<profile>/` into `tables.md` (cu.report).
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

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
    needs(spec)  # an `after` that names unknown notebooks or forms a cycle is an error before anything runs
    return spec


def needs(spec: dict) -> dict[str, list[str]]:
    """notebook -> the notebooks (of the same grid point) that must finish before it starts."""
    nbs = list(spec["notebooks"])
    after = spec.get("after") or {}
    unknown = sorted(set(after) - set(nbs)) + sorted({d for ds in after.values() for d in ds} - set(nbs))
    if unknown:
        raise ValueError(f"sweep 'after' names {unknown}, which are not in its notebooks {nbs}")
    out = {nb: list(after[nb]) if nb in after else nbs[i - 1:i] for i, nb in enumerate(nbs)}
    order = []
    pending = dict(out)
    while pending:
        ready = [nb for nb, ds in pending.items() if all(d in order for d in ds)]
        if not ready:
            raise ValueError(f"sweep 'after' has a cycle among {sorted(pending)}")
        order += ready
        for nb in ready:
            del pending[nb]
    return out


def points(spec: dict) -> list[dict]:
    names = list(spec["grid"])
    values = [v if isinstance(v, list) else [v] for v in spec["grid"].values()]
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def point_name(point: dict) -> str:
    return "_".join(f"{k.lower()}-{v}" for k, v in point.items()) or "base"


def run_notebook(spec: dict, point: dict, nb: str, dry_run: bool = False, threads: int | None = None) -> str:
    """Run one notebook of one grid point; returns 'ok', 'skipped' (done before) or an error text."""
    out_dir = ROOT / "runs" / spec["profile"] / point_name(point)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = out_dir / f"{nb}.done"
    if done.exists():
        return "skipped"
    params = {**spec.get("parameters", {}), **point}
    cmd = [sys.executable, "-m", "papermill", f"notebooks/{nb}.ipynb", str(out_dir / f"{nb}.ipynb"),
           "-f", f"configs/{spec['profile']}.yaml", "-y", yaml.safe_dump(params), "--cwd", "notebooks",
           "-k", "python3", "--no-progress-bar", "--log-output"]
    if dry_run:
        print(" ".join(cmd[:6]), "...", params)
        return "skipped"
    env = None
    if threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = out_dir / f"{nb}.log"  # written as the notebook runs: `tail -f` it to follow a run
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, text=True, env=env)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        return f"{nb} failed (log: {log}): {' | '.join(tail)}"
    done.write_text("ok\n")
    return "ok"


def run_point(spec: dict, point: dict, dry_run: bool = False) -> tuple[str, str]:
    """Run one grid point's notebooks one after another in an order that respects `after`;
    returns (point name, 'ok' | 'skipped' | error text)."""
    status = "skipped"
    for nb in _order(spec):
        result = run_notebook(spec, point, nb, dry_run)
        if result not in ("ok", "skipped"):
            return point_name(point), result
        if result == "ok":
            status = "ok"
    return point_name(point), status


def _order(spec: dict) -> list[str]:
    req, order = needs(spec), []
    while len(order) < len(req):
        order += [nb for nb in spec["notebooks"] if nb not in order and all(d in order for d in req[nb])][:1]
    return order


def run_sweep(spec: dict, jobs: int = 1, threads: int | None = None, log=print) -> dict[str, str]:
    """Run every (grid point, notebook) with up to `jobs` at once, each when what it needs is done.

    Returns {point name: 'ok' | 'skipped' | the first error}. A notebook whose requirement failed is not
    run (its point reports the failure). Logs one line per notebook started and finished.
    """
    req = needs(spec)
    grid = points(spec)
    tasks = [(i, nb) for i in range(len(grid)) for nb in spec["notebooks"]]
    state = {t: "pending" for t in tasks}  # pending -> running -> ok | skipped | failed | blocked
    status = {point_name(p): "skipped" for p in grid}
    cond = threading.Condition()

    def ready(task):
        i, nb = task
        return state[task] == "pending" and all(state[(i, d)] in ("ok", "skipped") for d in req[nb])

    def worker():
        while True:
            with cond:
                while True:
                    for t in tasks:  # a requirement that failed blocks what needs it, transitively
                        if state[t] == "pending" and any(state[(t[0], d)] in ("failed", "blocked") for d in req[t[1]]):
                            state[t] = "blocked"
                    task = next((t for t in tasks if ready(t)), None)
                    if task is not None or all(s != "pending" for s in state.values()):
                        break
                    cond.wait()
                if task is None:
                    cond.notify_all()
                    return
                state[task] = "running"
            i, nb = task
            name = point_name(grid[i])
            t0 = time.time()
            if not (ROOT / "runs" / spec["profile"] / name / f"{nb}.done").exists():
                log(f"start {name} {nb}")
            try:
                result = run_notebook(spec, grid[i], nb, threads=threads)
            except BaseException as err:  # noqa: BLE001 - reported as the notebook's failure
                result = f"{nb} failed: {err!r}"
            with cond:
                state[task] = result if result in ("ok", "skipped") else "failed"
                if result == "ok" and status[name] == "skipped":
                    status[name] = "ok"
                elif result not in ("ok", "skipped") and status[name] in ("ok", "skipped"):
                    status[name] = result
                cond.notify_all()
            if result != "skipped":
                log(f"{'done ' if result == 'ok' else 'FAIL '} {name} {nb} ({time.time() - t0:.0f} s)"
                    + ("" if result == "ok" else f": {result}"))

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, jobs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="a sweep file, e.g. configs/sweeps/default.yaml")
    ap.add_argument("--jobs", type=int, default=1, help="notebooks run side by side (default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP/MKL threads of each notebook process (default: inherited from the environment)")
    ap.add_argument("--dry-run", action="store_true", help="print the runs without executing them")
    args = ap.parse_args()
    spec = load_sweep(args.sweep)
    grid = points(spec)
    if args.dry_run:
        for p in grid:
            run_point(spec, p, dry_run=True)
        return
    stamp = lambda msg: print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)  # noqa: E731
    stamp(f"sweep {spec['profile']}: {len(grid)} grid points x {len(spec['notebooks'])} notebooks, "
          f"{args.jobs} at once" + (f", {args.threads} threads each" if args.threads else ""))
    status = run_sweep(spec, args.jobs, args.threads, log=stamp)
    from cu.report import markdown

    folder = ROOT / "results" / spec["profile"]
    if folder.exists():
        (folder / "tables.md").write_text(markdown(folder))
        print(f"tables: {folder / 'tables.md'}")
    failed = {n: s for n, s in status.items() if s not in ("ok", "skipped")}
    for name, s in status.items():
        print(f"{name}: {s}")
    if failed:
        print(f"{len(failed)} of {len(grid)} grid points failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
