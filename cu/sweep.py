"""Run the notebooks over a grid of parameters with papermill, each notebook a task on a Dask cluster.

    python -m cu.sweep configs/sweeps/NAME.yaml [--workers N] [--threads T] [--retries R] [--dry-run]
    python -m cu.sweep configs/sweeps/NAME.yaml --scheduler tcp://HOST:8786     # a cluster already running
    python -m cu.sweep configs/sweeps/NAME.yaml --slurm                         # Slurm jobs from its `cluster:` block
    python -m cu.sweep configs/sweeps/NAME.yaml --cluster threads --jobs N      # the thread pool, no Dask
    python3 -m cu.sweep configs/sweeps/NAME.yaml --cluster inline [--budget-s S] # in this process, no papermill

The sweep file names a base profile (`configs/<profile>.yaml`), the notebooks of each grid point, the
grid (parameter -> list of values; the product is taken) and fixed extra parameters. Each grid point
runs its notebooks into `runs/<profile>/<point>/`; a notebook that finished before with the same
parameters (its `.done` marker records them) is skipped, so an interrupted sweep resumes where it stopped,
and another sweep over the same grid with other parameters (e.g. other METHODS) runs them again. A failed notebook is reported and
ends what depends on it in its grid point; everything else goes on. A notebook stopped only by its checks cell
(`cu.checks.ChecksFailed`: a claim of the paper that the run does not reproduce, such as Contrastive's sample
accuracy within 5 points of Retrain's on a profile outside the paper's regime) is a finding, not a failure: its rows
are kept, its `.done` marker records the failed claims, the notebooks that need it run, and the summary lists it
(`CHECK` in the progress lines; the sweep still exits 0).

Scheduling is per notebook, not per grid point: a notebook may start once the notebooks it needs (in
the same grid point) have finished. By default each notebook needs the one before it; the optional
`after` mapping declares what a notebook needs instead, e.g.

    after: {03_sample_unlearning: [01_training], 04_mia: [02_class_unlearning, 03_sample_unlearning]}

lets 02 and 03 run side by side once 01 (which trains the Original they share) is done.

Backends. By default (`--cluster local`) a `dask.distributed.LocalCluster` of `--workers N` processes
with one thread each runs the notebooks, so `python -m cu.sweep X.yaml` needs nothing started first;
`--scheduler tcp://HOST:8786` uses a running cluster (`dask scheduler` and `dask worker ... --nthreads 1`,
with this repository at the same path on every machine and `cu` importable there), and `--slurm` starts
`dask_jobqueue.SLURMCluster` workers, one notebook at a time per Slurm job, from the sweep file's
`cluster:` block (queue, cores, memory, gpus, walltime, jobs; see `slurm_cluster`). Each notebook of each
grid point is one Dask task; the tasks it needs are passed to it as futures, so Dask orders them, and
earlier grid points go first. A task whose worker is lost is run again elsewhere (`--retries R`, which
also retries a task that raised; a notebook that fails is not retried: its error is reported; one whose
kernel died before it ran a cell is started again, `KERNEL_STARTS` in all).
`--cluster threads` keeps the earlier scheduler: `--jobs N` threads in this process, each running
papermill, the notebooks writing `results/` themselves under a file lock. `--cluster inline` runs the
notebooks one at a time in this very process (`run_inline`: each notebook's code cells in a fresh namespace,
the parameters injected after its `parameters` cell as papermill does), for a machine that has the
scientific stack but not papermill and Jupyter, such as a lent GPU machine; `--budget-s S` starts no
notebook once S seconds have passed (threads and inline), so a run that must end by a deadline stops
between notebooks, every finished one's rows already written.

One writer. On Dask a notebook writes its rows into its grid point's own folder
(`RESULTS_DIR=runs/<profile>/<point>/results`, which starts with copies of `results/<profile>/`'s files, so a
notebook finds what it reads there: tuned_hparams.csv, or the mia.csv that notebook 06 compares with; a results
file the point already has is never overwritten); the task returns the rows of the files the notebook wrote
(read back from those CSVs, and listed in its `.done` marker) less the rows copied in unchanged, and this
process alone merges them into
`results/<profile>/*.csv` with `cu.results.upsert_csv` under each file's key (`KEYS`). A failed notebook
returns no rows and leaves no `.done`, so nothing of it reaches `results/`; a notebook done before is
skipped, but its rows are merged again from its grid point's CSVs (a sweep stopped before merging loses
nothing). `--threads T` sets OMP_NUM_THREADS/MKL_NUM_THREADS of each notebook's process (default: this
command's own; on a CPU, workers x threads should not exceed the cores). Afterwards it aggregates
`results/<profile>/` into `tables.md` (cu.report).

`merge_methods` (optional, a list of METHODS names) merges only those methods' rows; every other row (the
Original's and Retrain's reference rows, other methods') stays in the grid point's folder. It is for adding
methods to seeds whose models were trained again on another checkout (`only_methods`); the Dask backends only.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import yaml

from cu.results import KEY, upsert_csv
from cu.runtime import atomic_write

ROOT = Path.cwd()

# The results files notebooks write, each with the key its rows are merged under (the key the notebook
# itself passes to upsert_csv). A notebook that writes a file not listed here fails on Dask: add the file.
KEYS = {
    "training.csv": KEY,
    "training_per_class.csv": [*KEY, "cls"],
    "class_unlearning.csv": KEY,
    "sample_unlearning.csv": KEY,
    "mia.csv": [*KEY, "n_forget", "feature", "classifier"],
    "efficiency.csv": [*KEY, "task"],
    "forgetting.csv": [*KEY, "n_models"],
}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Dask's nannies set these for their workers (distributed.nanny.pre-spawn-environ: the thread variables at 1 and
# MALLOC_TRIM_THRESHOLD_=65536), and a LocalCluster's nannies write them into *this* process's os.environ too. A
# notebook started by a worker would inherit them: the trim threshold makes glibc hand every freed block above
# 64 KiB back to the system, so PyTorch's per-step tensors become fresh mmaps and page faults (a third of the CPU
# time in the kernel; benchmarks/train_loop.py at two threads, one A/B run: 323 img/s with it, 513 without).
# A notebook gets the values this command started with (`_OWN_ENV`, read at import, before any cluster), or
# --threads for the thread variables; a variable it did not have is unset.
WORKER_VARS = ("MALLOC_TRIM_THRESHOLD_",)
_OWN_ENV = {k: os.environ.get(k) for k in (*THREAD_VARS, *WORKER_VARS)}
LABELS = {"ok": "done ", "skipped": "skip ", "blocked": "block"}  # progress lines; anything else is a failure
# A notebook that ran to its end but whose checks cell raised cu.checks.ChecksFailed returns a result starting with
# this: a finding about the method (e.g. Contrastive at paper settings more than 5 points under Retrain on samples),
# not a broken run. Its rows are kept, its marker written (with the failed claims), and what needs it runs.
CHECKS_FAILED = "checks failed"
# Papermill's kernel can die before it runs a cell: jupyter_client picks free ports, closes them and starts the
# kernel, and a kernel started at the same moment by another notebook can bind one of them first (zmq "Address
# already in use"; nteract/papermill#511, jupyter/jupyter_client#154, both open). The notebook never ran, so it is
# started again, up to KERNEL_STARTS times in all; the log keeps each failed start.
KERNEL_START_FAILED = "Kernel died before replying to kernel_info"
KERNEL_STARTS = 3


def finished(result: str) -> bool:
    """Whether a notebook's result lets the notebooks that need it run: it ran ('ok'), ran before ('skipped'), or
    ran with failed checks (`CHECKS_FAILED`)."""
    return result in ("ok", "skipped") or result.startswith(CHECKS_FAILED)


def _label(result: str) -> str:
    return LABELS.get(result, "CHECK" if result.startswith(CHECKS_FAILED) else "FAIL ")


def _point_status(current: str, result: str) -> str:
    """A grid point's status once one more of its notebooks ended: its first failure, else its first failed
    checks, else 'ok' when any notebook ran, else 'skipped' ('blocked' adds nothing: what blocked it is there)."""
    def rank(s):
        return 0 if s == "skipped" else 1 if s == "ok" else 2 if s.startswith(CHECKS_FAILED) else 3

    return current if result == "blocked" or rank(result) <= rank(current) else result


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
    only = spec.get("merge_methods")
    if only is not None and (not isinstance(only, list) or not only or not all(isinstance(m, str) for m in only)):
        raise ValueError(f"{path}: merge_methods must be a non-empty list of method names (as in METHODS, e.g. "
                         f"['finetune:tuned']), not {only!r}; leave it out to merge every row")
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


def _profile(spec: dict, root: Path | None = None) -> dict:
    """The sweep's base profile, `configs/<profile>.yaml`, as a dict."""
    return yaml.safe_load((Path(root or ROOT) / "configs" / f"{spec['profile']}.yaml").read_text()) or {}


def profile_name(spec: dict, point: dict, root: Path | None = None) -> str:
    """The notebooks' PROFILE for a grid point: they write `{RESULTS_DIR}/{PROFILE}/<file>.csv`."""
    return str({**_profile(spec, root), **run_parameters(spec, point)}.get("PROFILE", spec["profile"]))


def _checks_failure(executed: Path) -> str | None:
    """The message of the `ChecksFailed` that stopped a notebook papermill ran (read from the executed copy it
    saves on failure), or None when it failed otherwise."""
    try:
        nb = json.loads(executed.read_text())
    except (OSError, ValueError):
        return None
    errors = [o for c in nb.get("cells", []) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    return errors[-1].get("evalue", "") if errors and errors[-1].get("ename") == "ChecksFailed" else None


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())


@contextlib.contextmanager
def notebook_lock(path: Path, what: str):
    """Hold an exclusive lock on `path` (fcntl.flock, across processes and Dask workers of one machine or a
    shared file system that supports it) while one notebook of one grid point runs: a second sweep over the same
    point and notebook (say, with other METHODS) waits for the first, then finds its `.done` marker (skipped) or
    runs after it, instead of both writing the same executed notebook, log and results folder at once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{time.strftime('%H:%M:%S')} wait  {what}: another sweep is running this notebook of this point",
                  flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _papermill(cmd: list[str], root: Path, log: Path, env: dict | None, extra: dict) -> subprocess.CompletedProcess:
    """Run papermill's command line with its output in `log`; again (the log appended to) while its kernel died
    before it ran a cell (`KERNEL_START_FAILED` in that start's output), up to `KERNEL_STARTS` starts."""
    for start in range(1, KERNEL_STARTS + 1):
        with open(log, "w" if start == 1 else "a") as fh:
            if start > 1:
                fh.write(f"\n[cu.sweep] the kernel died before it ran a cell: start {start} of {KERNEL_STARTS}\n")
                fh.flush()
            begin = fh.tell()  # where this start's output begins
            proc = subprocess.run(cmd, cwd=root, stdout=fh, stderr=subprocess.STDOUT, text=True, env=env, **extra)
        if proc.returncode == 0:
            return proc
        with open(log, "rb") as fh:
            fh.seek(begin)
            if KERNEL_START_FAILED not in fh.read().decode(errors="replace"):
                return proc
    return proc


def run_notebook(spec: dict, point: dict, nb: str, dry_run: bool = False, threads: int | None = None, *,
                 root: Path | str | None = None, results_dir: Path | str | None = None,
                 env: dict | None = None, inline: bool = False) -> str:
    """Run one notebook of one grid point; returns 'ok', 'skipped' (done before), `CHECKS_FAILED: <claims>` (it ran
    to its end and its checks cell raised `ChecksFailed`, now or when its marker was written) or an error text.

    With `results_dir` (the Dask path) the notebook gets RESULTS_DIR=results_dir, and its `.done` marker
    lists the results files it wrote (`wrote: [training.csv, ...]`). `env` sets (value) or removes (None)
    variables of the notebook's process; `threads` sets OMP/MKL threads over it. `inline` runs it in this
    process (`run_inline`) instead of papermill; `env` and `threads` do not apply then.
    """
    root = Path(root or ROOT)
    out_dir = root / "runs" / spec["profile"] / point_name(point)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = out_dir / f"{nb}.done"
    with notebook_lock(out_dir / f".{nb}.lock", f"{out_dir.name} {nb}"):
        params = run_parameters(spec, point)
        marker = done_marker(done, params)
        if marker is not None:
            earlier = marker.get("checks_failed")
            return f"{CHECKS_FAILED} (in an earlier run): {earlier}" if earlier else "skipped"
        recorded, params = params, dict(params)  # the marker records the sweep's parameters, not RESULTS_DIR
        if results_dir is not None:
            params["RESULTS_DIR"] = str(results_dir)
            own = Path(results_dir) / profile_name(spec, point, root)
            before = _stamps(own)
        cmd = [sys.executable, "-m", "papermill", f"notebooks/{nb}.ipynb", str(out_dir / f"{nb}.ipynb"),
               "-f", f"configs/{spec['profile']}.yaml", "-y", yaml.safe_dump(params), "--cwd", "notebooks",
               "-k", "python3", "--no-progress-bar", "--log-output"]
        if dry_run:
            print(" ".join(cmd[:6]), "...", params)
            return "skipped"
        changes = {**(env or {}), **({k: str(threads) for k in THREAD_VARS} if threads else {})}
        proc_env = None
        if changes:
            proc_env = {k: v for k, v in {**os.environ, **changes}.items() if v is not None}
        extra = {"preexec_fn": _die_with_parent} if results_dir is not None and sys.platform == "linux" else {}
        log = out_dir / f"{nb}.log"  # written as the notebook runs: `tail -f` it to follow a run
        checks = None  # the failed claims of a notebook whose checks cell raised ChecksFailed
        if inline:
            try:
                run_inline(root / "notebooks" / f"{nb}.ipynb", {**_profile(spec, root), **params}, out_dir / f"{nb}.ipynb",
                           log, cwd=root / "notebooks")
            except Exception as err:  # noqa: BLE001 - the notebook's failure, reported like papermill's
                if type(err).__name__ != "ChecksFailed":
                    return f"{nb} failed (log: {log}): {type(err).__name__}: {err}"
                checks = _one_line(err)
        else:
            proc = _papermill(cmd, root, log, proc_env, extra)
            if proc.returncode != 0:
                checks = _checks_failure(out_dir / f"{nb}.ipynb")
                if checks is None:
                    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                    return f"{nb} failed (log: {log}): {' | '.join(tail)}"
                checks = _one_line(checks)
        recorded_marker = {"params": recorded, **({"checks_failed": checks} if checks else {})}
        marker = yaml.safe_dump(recorded_marker)
        if results_dir is not None:  # the files it wrote (with 02 and 03 side by side, perhaps the other's too:
            after = _stamps(own)     # the same point's rows either way, so merging them again changes nothing)
            changed = sorted(f for f in after if after[f] != before.get(f))
            inputs = root / "results" / own.name
            stray = [f for f in changed if f not in KEYS and not (inputs / f).exists()]
            if stray:
                return (f"{nb} wrote {stray} under RESULTS_DIR, which cu.sweep.KEYS does not list, so its rows would "
                        f"never reach results/: add each file with the key its rows are upserted under")
            marker = yaml.safe_dump({"wrote": [f for f in changed if f in KEYS], **recorded_marker})
        done.write_text(marker)
        return f"{CHECKS_FAILED}: {checks}" if checks else "ok"


class _Tee:
    """stdout of an inline notebook: each write goes to its log file, to a cell's capture and to the console."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self):
        for s in self.streams:
            s.flush()


class _Markdown(str):
    """IPython.display.Markdown for an inline notebook: its text."""


def _display(*objs, **_):
    """display() of an inline notebook, also its cells' last values: a table's text, a Markdown's source, else
    the repr, as a notebook's text/plain output shows it."""
    for o in objs:
        print(o.to_string() if hasattr(o, "to_string") else str(o) if isinstance(o, _Markdown) else repr(o))


@contextlib.contextmanager
def _text_display():
    """`IPython.display`'s display() and Markdown as plain text for an inline notebook (no frontend), whether
    IPython is installed (its module's two names swapped for the notebook's run) or not (a stand-in module)."""
    import types

    try:
        import IPython.display as mod
        saved, modules = {"display": mod.display, "Markdown": mod.Markdown}, {}
    except ImportError:
        mod, saved = types.ModuleType("IPython.display"), {}
        pkg = types.ModuleType("IPython")
        pkg.display, pkg.get_ipython = mod, lambda: None
        modules = {"IPython": pkg, "IPython.display": mod}
        sys.modules.update(modules)
    mod.display, mod.Markdown = _display, _Markdown
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(mod, k, v)
        for k in modules:
            sys.modules.pop(k, None)


def run_inline(notebook: Path, params: dict, out: Path, log: Path, cwd: Path) -> None:
    """Execute `notebook`'s code cells in this process, as papermill runs them in a kernel: in order, in one fresh
    namespace, with `params` assigned right after the cell tagged `parameters`, in the folder `cwd`, the value of a
    cell's last expression printed. Writes the executed notebook (each cell's printed text as its output, the
    injected parameters as a cell) to `out` and everything printed to `log`; raises the first cell's error.
    Matplotlib draws off-screen; `IPython.display.display` prints; figures are closed and the GPU cache
    emptied afterwards."""
    import ast
    import gc
    import io
    import traceback

    import matplotlib

    matplotlib.use("Agg")
    nb = json.loads(Path(notebook).read_text())
    injected = {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "execution_count": None,
                "outputs": [], "source": "".join(f"{k} = {v!r}\n" for k, v in params.items())}
    ns: dict = {"__name__": "__main__"}
    cells, here, console = [], Path.cwd(), sys.stdout
    os.chdir(cwd)
    try:
        with open(log, "w") as fh, _text_display():
            for cell in nb["cells"]:
                cells.append(cell)
                if cell["cell_type"] != "code":
                    continue
                src = "".join(cell["source"])
                tags = cell.get("metadata", {}).get("tags", [])
                steps = [src] + ([injected["source"]] if "parameters" in tags else [])
                for i, code in enumerate(steps):
                    captured = io.StringIO()
                    with contextlib.redirect_stdout(_Tee(fh, captured, console)):
                        try:
                            tree = ast.parse(code)
                            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
                            exec(compile(tree, f"<{Path(notebook).name}>", "exec"), ns)
                            if last is not None:
                                value = eval(compile(ast.Expression(last.value), f"<{Path(notebook).name}>", "eval"), ns)
                                if value is not None:
                                    _display(value)
                        except Exception:
                            print(traceback.format_exc())
                            raise
                        finally:
                            target = cell if i == 0 else injected
                            target["outputs"] = [{"output_type": "stream", "name": "stdout",
                                                  "text": captured.getvalue()}] if captured.getvalue() else []
                    if i:
                        cells.append(injected)
    finally:
        os.chdir(here)
        import matplotlib.pyplot as plt

        plt.close("all")
        ns.clear()
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps({**nb, "cells": cells}, indent=1)))


def run_parameters(spec: dict, point: dict) -> dict:
    """The parameters a grid point's notebooks run with beyond the profile file: the sweep's `parameters`, then
    the point's values."""
    return {**spec.get("parameters", {}), **point}


def done_marker(done: Path, params: dict) -> dict | None:
    """A notebook's `.done` marker (a dict; {} for an empty one) when it says the notebook ran with `params` (its
    `params` entry), else None. A marker of other parameters (another sweep over the same grid, e.g. other
    METHODS) does not count: the notebook runs again, reusing whatever its models' caches hold. A marker written
    before markers recorded parameters counts."""
    if not done.exists():
        return None
    marker = yaml.safe_load(done.read_text())
    marker = marker if isinstance(marker, dict) else {}
    recorded = marker.get("params")
    return marker if recorded is None or recorded == yaml.safe_load(yaml.safe_dump(params)) else None


def is_done(done: Path, params: dict) -> bool:
    """Whether `done_marker` finds the notebook done with `params`."""
    return done_marker(done, params) is not None


def _stamps(folder: Path) -> dict[str, tuple]:
    """CSV name -> (inode, mtime, size): upsert_csv replaces a file it writes, so any write changes these."""
    out = {}
    for p in sorted(folder.glob("*.csv")):
        st = p.stat()
        out[p.name] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def _die_with_parent():
    """In the notebook's process before papermill starts (Linux): be killed when the worker running it dies,
    so a lost worker leaves no notebook running next to the task's retry (the kernel follows papermill)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


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


def run_sweep(spec: dict, jobs: int = 1, threads: int | None = None, log=print, inline: bool = False,
              budget_s: float | None = None) -> dict[str, str]:
    """Run every (grid point, notebook) with up to `jobs` at once, each when what it needs is done.

    Returns {point name: 'ok' | 'skipped' | the first error}. A notebook whose requirement failed is not
    run (its point reports the failure). Logs one line per notebook started and finished. `inline` runs the
    notebooks in this process, one at a time (`run_inline`); after `budget_s` seconds no notebook starts
    (those left report that the budget was spent).
    """
    if inline and jobs != 1:
        raise ValueError("--cluster inline runs one notebook at a time in this process: leave --workers at 1")
    if spec.get("merge_methods"):  # here the notebooks write results/ themselves: every row would land
        raise ValueError("merge_methods is applied by the Dask backends only (run_sweep_dask, or cu.sweep without "
                         "--cluster threads/inline): drop it from the spec to run the notebooks here")
    started = time.time()
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
            if not is_done(ROOT / "runs" / spec["profile"] / name / f"{nb}.done", run_parameters(spec, grid[i])):
                log(f"start {name} {nb}")
            try:
                if budget_s is not None and time.time() - started > budget_s:
                    result = f"{nb} not started: the budget of {budget_s:g} s was spent"
                else:
                    result = run_notebook(spec, grid[i], nb, threads=threads, inline=inline)
            except BaseException as err:  # noqa: BLE001 - reported as the notebook's failure
                result = f"{nb} failed: {err!r}"
            with cond:
                state[task] = result if result in ("ok", "skipped") else "ok" if finished(result) else "failed"
                status[name] = _point_status(status[name], result)
                cond.notify_all()
            if result != "skipped":
                log(f"{_label(result)} {name} {nb} ({time.time() - t0:.0f} s)" + ("" if result == "ok" else f": {result}"))

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, jobs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return status


# ---- Dask: one task per notebook, this process the one writer of results/ -------------------------------

def run_task(root: str, spec: dict, point: dict, nb: str, env: dict, *needed: dict) -> dict:
    """One notebook of one grid point, run on a Dask worker into the point's own results folder.

    `needed` are the results of the tasks it needs (Dask passes them once they are done). Returns
    {point, notebook, status ('ok' | 'skipped' | 'blocked' | an error text), rows {file: DataFrame}, seconds,
    worker}; the rows are those of the files the notebook wrote (its `.done` marker lists them), for the
    client to merge. Writes nothing under results/.
    """
    root_path, name, t0 = Path(root), point_name(point), time.time()
    out = {"point": name, "notebook": nb, "rows": {}, "seconds": 0.0, "worker": _worker_address()}
    failed = [d["notebook"] for d in needed if not finished(d["status"])]
    if failed:
        return {**out, "status": "blocked", "error": f"{nb} not run: it needs {failed[0]}, which failed"}
    folder = root_path / "runs" / spec["profile"] / name
    own = folder / "results" / profile_name(spec, point, root_path)
    done = folder / f"{nb}.done"
    if not is_done(done, run_parameters(spec, point)):
        _copy_inputs(root_path / "results" / own.name, own)
    status = run_notebook(spec, point, nb, root=root_path, results_dir=folder / "results", env=env)
    if not finished(status):
        return {**out, "status": status, "seconds": time.time() - t0}
    marker = yaml.safe_load(done.read_text())
    wrote = marker.get("wrote", []) if isinstance(marker, dict) else []  # a marker of --cluster threads: "ok"
    rows = {f: _written_rows(own, f) for f in wrote if (own / f).exists()}
    return {**out, "status": status, "rows": rows, "seconds": time.time() - t0}


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # not on a worker (a test calling run_task directly)
        return "local"


def _copy_inputs(shared: Path, own: Path) -> None:
    """Copy `results/<profile>/`'s files into a point's folder, where a notebook finds them at
    {RESULTS_DIR}/{PROFILE}/. Files notebooks only read (not in KEYS: tuned_hparams.csv, ...) are refreshed
    when changed. A results file (in KEYS) is copied only where the point has none, so a notebook's own rows
    (perhaps not merged yet, or written by a notebook running beside it) are never overwritten, and a snapshot
    of the copy goes to `.inputs/`, so that `_written_rows` returns only what the point's notebooks changed."""
    own.mkdir(parents=True, exist_ok=True)
    for src in sorted(shared.glob("*.csv")) if shared.exists() else []:
        dst, st = own / src.name, src.stat()
        if src.name in KEYS:
            if not dst.exists():
                (own / ".inputs").mkdir(exist_ok=True)
                atomic_write(own / ".inputs" / src.name, lambda tmp, src=src: shutil.copy2(src, tmp))
                atomic_write(dst, lambda tmp, src=src: shutil.copy2(src, tmp))
            continue
        if dst.exists() and (dst.stat().st_mtime_ns, dst.stat().st_size) == (st.st_mtime_ns, st.st_size):
            continue
        atomic_write(dst, lambda tmp, src=src: shutil.copy2(src, tmp))


def _written_rows(own: Path, name: str) -> pd.DataFrame:
    """The rows of a point's results file less those copied in from results/ unchanged (`_copy_inputs`)."""
    df = pd.read_csv(own / name)
    snapshot = own / ".inputs" / name
    if not snapshot.exists() or df.empty:
        return df
    text = dict(dtype=str, keep_default_na=False)  # rows compared as the CSV writes them: no dtype guessing
    mine = pd.read_csv(own / name, **text)
    base = pd.read_csv(snapshot, **text).reindex(columns=mine.columns, fill_value="").drop_duplicates()
    both = mine.merge(base, how="left", on=list(mine.columns), indicator=True)
    return df[(both["_merge"] == "left_only").to_numpy()].reset_index(drop=True)


def only_methods(rows: dict[str, pd.DataFrame], methods: list[str] | None) -> tuple[dict[str, pd.DataFrame], int]:
    """A sweep's `merge_methods`: the rows of those methods (a file without a `method` column: none), and how many
    rows were held back. They stay in the grid point's own folder (runs/<profile>/<point>/results/).

    For rows computed on models other than the ones results/ already pairs with a seed: a seed's Original and
    Retrain trained again on another checkout (a new checkout starts with an empty model cache; another CPU gives
    other floats) give the new methods' rows, while the seed's reference and earlier rows stay the first models'."""
    if methods is None:
        return rows, 0
    kept = {f: df[df["method"].isin(methods)] if "method" in df else df.iloc[:0] for f, df in rows.items()}
    return kept, sum(len(df) for df in rows.values()) - sum(len(df) for df in kept.values())


def merge(rows: dict[str, pd.DataFrame], folder: Path) -> int:
    """Upsert a task's rows into results/<profile>/ under each file's key; returns the number of rows."""
    for name, df in rows.items():
        if len(df):
            upsert_csv(folder / name, df, key=KEYS[name])
    return sum(len(df) for df in rows.values())


def run_sweep_dask(spec: dict, client, threads: int | None = None, retries: int = 2, log=print) -> dict[str, str]:
    """Run every (grid point, notebook) as a Dask task on `client`'s cluster, merging rows as tasks finish.

    A task gets the futures of the tasks it needs as arguments, so Dask starts it once they are done;
    earlier grid points have higher priority. `retries` re-runs a task that raised (a lost worker is
    re-run by the scheduler, up to its `distributed.scheduler.allowed-failures`). Logs one progress line
    per finished notebook and returns {point name: 'ok' | 'skipped' | the first error}.
    """
    from distributed import as_completed

    from cu.sweep import run_task  # by reference, also under `python -m cu.sweep` (whose functions live in __main__)

    root = ROOT.resolve()
    req, grid, order = needs(spec), points(spec), _order(spec)
    env = {k: str(threads) if threads and k in THREAD_VARS else v for k, v in _OWN_ENV.items()}  # not the worker's
    token = uuid.uuid4().hex[:8]  # keys unique to this sweep, so a scheduler never hands back an old result
    futures, task_of = {}, {}
    for i, point in enumerate(grid):
        for nb in order:
            fut = client.submit(run_task, str(root), spec, point, nb, env, *[futures[(i, d)] for d in req[nb]],
                                key=f"{nb}-{point_name(point)}-{token}", priority=len(grid) - i,
                                retries=retries, pure=False)
            futures[(i, nb)] = fut
            task_of[fut.key] = (i, nb)
    status = {point_name(p): "skipped" for p in grid}
    for k, fut in enumerate(as_completed(list(futures.values())), 1):
        i, nb = task_of[fut.key]
        name = point_name(grid[i])
        try:
            res = fut.result()
        except Exception as err:  # noqa: BLE001 - workers lost more often than allowed, or run_task raised each try
            res = {"status": f"{nb} failed on the cluster: {err!r}", "rows": {}, "seconds": 0.0, "worker": "?"}
        result = res["status"]
        kept, held = only_methods(res["rows"], spec.get("merge_methods"))
        n_rows = merge(kept, root / "results" / profile_name(spec, grid[i], root))
        status[name] = _point_status(status[name], result)
        head = f"[{k}/{len(futures)}] {_label(result)} {name} {nb}"
        merged = f"{n_rows} rows merged" + (f", {held} held back (merge_methods)" if held else "")
        if result == "ok" or result.startswith(CHECKS_FAILED):
            finding = "" if result == "ok" else f": {result}"
            log(f"{head} ({res['seconds']:.0f} s on {res['worker']}, {merged}){finding}")
        elif result == "skipped":
            log(f"{head} (done before, {merged})")
        else:
            log(f"{head}: {res.get('error', result)}")
    return status


def slurm_cluster(cfg: dict, **overrides):
    """`dask_jobqueue.SLURMCluster` from a sweep file's `cluster:` block, one notebook at a time per job:

        cluster:
          queue: gpu           # partition (#SBATCH -p)
          cores: 8             # CPUs per job (--cpus-per-task); also each notebook's OMP/MKL threads
          memory: 32GB         # per job (--mem)
          gpus: 1              # per job: --gres=gpu:1
          walltime: "04:00:00" # per job (-t); a worker lost to it is re-run elsewhere
          jobs: 4              # Slurm jobs (workers) to start
          # any other SLURMCluster argument, e.g. account, job_script_prologue: ["source .venv/bin/activate"]

    Each job runs one worker with one thread (a notebook uses the job's cores and GPUs itself).
    """
    from dask_jobqueue import SLURMCluster

    cfg = dict(cfg or {})
    missing = [k for k in ("cores", "memory", "walltime") if k not in cfg]
    if missing:
        raise ValueError(f"the sweep file's cluster: block lacks {missing}; --slurm needs cores, memory and "
                         f"walltime (and usually queue, gpus, jobs), e.g. cores: 8, memory: 32GB, walltime: '04:00:00'")
    cores, gpus = int(cfg.pop("cores")), int(cfg.pop("gpus", 0))
    cfg.pop("jobs", None)
    extra = list(cfg.pop("job_extra_directives", [])) + ([f"--gres=gpu:{gpus}"] if gpus else [])
    return SLURMCluster(cores=1, processes=1, job_cpu=cores, job_extra_directives=extra, **{**cfg, **overrides})


@contextlib.contextmanager
def dask_client(cluster: str = "local", workers: int = 1, scheduler: str | None = None, slurm: dict | None = None,
                retries: int = 2, log=print):
    """A Dask client on a LocalCluster (`workers` processes, one thread each), on the running scheduler
    at `scheduler`, or on Slurm jobs (`slurm`: the sweep file's cluster: block); closed afterwards."""
    import dask
    from distributed import Client, LocalCluster

    made = None
    with dask.config.set({"distributed.scheduler.allowed-failures": retries}):  # clusters started here
        if scheduler:
            client = Client(scheduler)
        elif cluster == "slurm":
            made = slurm_cluster(slurm)
            made.scale(jobs=int((slurm or {}).get("jobs", 1)))
            client = Client(made)
        elif cluster == "local":
            made = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
            client = Client(made)
        else:
            raise ValueError(f"unknown cluster {cluster!r}: use local, slurm or threads, or give --scheduler")
    try:
        served = "dashboard" in client.scheduler_info().get("services", {})  # its page says when bokeh is missing
        log(f"dask: {client.scheduler.address}, dashboard {client.dashboard_link if served else 'none'}")
        yield client
    finally:
        client.close()
        if made is not None:
            made.close()


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="a sweep file, e.g. configs/sweeps/default.yaml")
    ap.add_argument("--cluster", choices=["local", "slurm", "threads", "inline"], default=None,
                    help="local: a Dask LocalCluster (default); slurm: Slurm jobs from the sweep file's cluster: "
                         "block; threads: the thread pool of earlier versions, no Dask; inline: one notebook at a "
                         "time in this process, without papermill (a machine that lacks it, e.g. a lent GPU)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="threads/inline: start no notebook after this many seconds (a run with a deadline)")
    ap.add_argument("--slurm", action="store_true", help="same as --cluster slurm")
    ap.add_argument("--scheduler", metavar="tcp://HOST:8786", help="use this running Dask scheduler's workers")
    ap.add_argument("--workers", "--jobs", dest="workers", type=int, default=1,
                    help="notebooks run side by side: LocalCluster workers, or threads of --cluster threads (default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP/MKL threads of each notebook process (default: this command's environment; "
                         "with --slurm the cluster block's cores)")
    ap.add_argument("--retries", type=int, default=2, help="re-runs of a task whose worker was lost or that raised; a notebook that fails is "
                         "reported, not re-run (default 2)")
    ap.add_argument("--dry-run", action="store_true", help="print the runs without executing them")
    args = ap.parse_args(argv)
    kind = "slurm" if args.slurm else args.cluster
    if args.scheduler and kind is not None:
        ap.error(f"--scheduler uses a running cluster: leave out --cluster {kind} / --slurm")
    kind = "scheduler" if args.scheduler else kind or "local"
    spec = load_sweep(args.sweep)
    if kind == "slurm" and not spec.get("cluster"):
        ap.error(f"{args.sweep} has no cluster: block for --slurm (see cu.sweep.slurm_cluster for its keys)")
    grid = points(spec)
    if args.dry_run:
        for p in grid:
            run_point(spec, p, dry_run=True)
        return
    threads = args.threads or (int(spec["cluster"]["cores"]) if kind == "slurm" else None)
    stamp = lambda msg: print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)  # noqa: E731
    at_once = {"local": f"{args.workers} workers", "threads": f"{args.workers} at once", "inline": "in this process",
               "scheduler": args.scheduler,
               "slurm": f"{spec.get('cluster', {}).get('jobs', 1)} Slurm jobs"}[kind]
    stamp(f"sweep {spec['profile']}: {len(grid)} grid points x {len(spec['notebooks'])} notebooks, {at_once}"
          + (f", {threads} threads each" if threads else ""))
    if args.budget_s is not None and kind not in ("threads", "inline"):
        ap.error("--budget-s applies to --cluster threads or inline")
    if kind in ("threads", "inline") and spec.get("merge_methods"):
        ap.error(f"{args.sweep} has merge_methods, which only the Dask backends apply (there the sweep alone "
                 f"merges rows into results/; with --cluster {kind} the notebooks write results/ themselves): "
                 f"leave out --cluster {kind}")
    if kind in ("threads", "inline"):
        status = run_sweep(spec, args.workers, threads, log=stamp, inline=kind == "inline", budget_s=args.budget_s)
    else:
        with dask_client(kind, args.workers, args.scheduler, spec.get("cluster"), args.retries, log=stamp) as client:
            status = run_sweep_dask(spec, client, threads, args.retries, log=stamp)
    from cu.report import markdown

    folder = ROOT / "results" / profile_name(spec, grid[0])
    if folder.exists():
        (folder / "tables.md").write_text(markdown(Path(os.path.relpath(folder))))  # as cu.report writes it
        print(f"tables: {folder / 'tables.md'}")
    failed = {n: s for n, s in status.items() if not finished(s)}
    for name, s in status.items():
        print(f"{name}: {s}")
    findings = [n for n, s in status.items() if s.startswith(CHECKS_FAILED)]
    if findings:
        print(f"{len(findings)} of {len(grid)} grid points ran with failed checks (findings, not errors: their rows "
              f"are merged and the notebooks after them ran; each notebook's log and .done marker list the claims)")
    if failed:
        print(f"{len(failed)} of {len(grid)} grid points failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
