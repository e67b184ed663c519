"""cu.sweep on Dask: a real scheduler and two workers on 127.0.0.1 run tiny papermill notebooks.

The notebooks write one or two rows with cu.results.upsert_csv, so what is checked is the sweep: who
writes results/ (the client alone), resuming, a failed or lost task, and the same merged results from an
existing scheduler and from a LocalCluster. The Slurm path is checked up to its job script.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

import cu.sweep as S

pytest.importorskip("distributed")
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

PARAMETERS = '''PROFILE: str = "default"  # results go to RESULTS_DIR/PROFILE
SEED: int = 0  # the grid's parameter
RESULTS_DIR: str = "../results"  # tidy CSVs under RESULTS_DIR/PROFILE
SLEEP: float = 0.0  # seconds to sleep before writing (a worker can be killed meanwhile)
FAIL_AT: str = ""  # this notebook raises for SEED 1
PIDS: str = ""  # folder where the notebook records the worker running it'''

TRAINING = '''import os, time
from pathlib import Path
if PIDS:  # kernel -> papermill -> the worker process
    import psutil
    Path(PIDS).mkdir(exist_ok=True)
    Path(PIDS, f"{SEED}-{os.getpid()}").write_text(str(psutil.Process().parent().parent().pid))
time.sleep(SLEEP)
if FAIL_AT == "01_a" and SEED == 1:
    raise ValueError("01_a cannot run seed 1")
from cu.results import upsert_csv
upsert_csv(f"{RESULTS_DIR}/{PROFILE}/training.csv", [dict(method="original", dataset="fake", model="m", width=1,
           seed=SEED, epochs=1, acc_train=1.0, acc_test=0.5 + SEED / 100, seconds=1.5)])
if FAIL_AT == "01_a checks" and SEED == 1:  # a claim the run does not reproduce: a finding, after the rows
    from cu.checks import Checks
    c = Checks("01_a")
    c.claim("seed 1 reproduces the claim", False, "0.4")
    c.done()'''

UNLEARNING = '''from pathlib import Path
import os
assert Path(f"{RESULTS_DIR}/{PROFILE}/tuned_hparams.csv").exists(), "inputs are copied next to the outputs"
# Dask's nanny sets this for its workers; a notebook (PyTorch allocating per step) must not inherit it
assert "MALLOC_TRIM_THRESHOLD_" not in os.environ, "a Dask worker's malloc setting reached the notebook"
from cu.results import upsert_csv
upsert_csv(f"{RESULTS_DIR}/{PROFILE}/class_unlearning.csv", [
    dict(method=m, setting="paper", dataset="fake", model="m", width=1, seed=SEED, acc_test_retain=0.9,
         acc_train_forget=0.1 * SEED, acc_test_forget=0.0, seconds=2.0) for m in ("retrain", "contrastive")])'''


def _notebook(path: Path, code: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)


def _make_repo(root: Path) -> Path:
    """Two tiny notebooks (01_a writes training.csv, 02_b class_unlearning.csv), a profile and a tuning file."""
    (root / "notebooks").mkdir()
    _notebook(root / "notebooks" / "01_a.ipynb", TRAINING)
    _notebook(root / "notebooks" / "02_b.ipynb", UNLEARNING)
    (root / "configs").mkdir()
    (root / "configs" / "p.yaml").write_text("PROFILE: p\n")
    (root / "results" / "p").mkdir(parents=True)
    (root / "results" / "p" / "tuned_hparams.csv").write_text("method,task,hparams\ncontrastive,class,{}\n")
    return root


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "ROOT", _make_repo(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


SPEC = {"profile": "p", "notebooks": ["01_a", "02_b"], "grid": {"SEED": [0, 1]}, "parameters": {}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`dask scheduler` and `dask worker` processes (no nanny: a worker is the process we start)."""

    def __init__(self, log_dir: Path):
        self.log_dir, self.workers, self.logs = log_dir, [], []
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.scheduler = self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port",
                                                   self.address.rsplit(":", 1)[1], "--no-dashboard"])

    def _start(self, name, args):
        log = open(self.log_dir / f"{name}.log", "w")  # read it when a worker does not come up
        self.logs.append(log)
        return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]], env=ENV,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.log_dir)

    def ensure_workers(self, n: int, client) -> None:
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < n:
            name = f"worker{len(self.workers)}-{time.monotonic_ns()}"
            self.workers.append(self._start(name, ["worker", self.address, "--nthreads", "1", "--no-nanny",
                                                   "--no-dashboard", "--host", "127.0.0.1", "--name", name]))
        client.wait_for_workers(n, timeout=120)
        deadline = time.time() + 30  # a killed worker may still be listed for a moment
        while len(client.scheduler_info()["workers"]) != n and time.time() < deadline:
            time.sleep(0.2)

    def stop(self):
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for log in self.logs:
            log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from distributed import Client

    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.client = Client(c.address, timeout=60)
        c.ensure_workers(2, c.client)
        yield c
    finally:
        if getattr(c, "client", None) is not None:
            c.client.close()
        c.stop()


def _results(root: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((root / "results" / "p").glob("*.csv"))}


@pytest.fixture(scope="module")
def swept(cluster, tmp_path_factory):
    """The 2-seed sweep run once on the external scheduler: (root, status, log lines, results files)."""
    root = _make_repo(tmp_path_factory.mktemp("external"))
    cluster.ensure_workers(2, cluster.client)
    logs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(S, "ROOT", root)
        status = S.run_sweep_dask(SPEC, cluster.client, log=logs.append)
    return root, status, logs, _results(root)


def test_an_existing_scheduler_and_a_local_cluster_merge_the_same_rows(swept, repo, capsys, monkeypatch):
    root, status, logs, external = swept
    assert status == {"seed-0": "ok", "seed-1": "ok"}
    assert set(external) == {"training.csv", "class_unlearning.csv", "tuned_hparams.csv"}
    assert len(external["training.csv"].splitlines()) == 1 + 2
    assert len(external["class_unlearning.csv"].splitlines()) == 1 + 4
    assert len(logs) == 4 and all(line.startswith(f"[{k}/4] done ") for k, line in enumerate(logs, 1))
    # a notebook wrote only its point's folder (inputs copied in); the client alone wrote results/
    own = root / "runs" / "p" / "seed-1" / "results" / "p"
    assert sorted(p.name for p in own.glob("*.csv")) == ["class_unlearning.csv", "training.csv", "tuned_hparams.csv"]
    assert pd.read_csv(own / "training.csv").seed.tolist() == [1]
    assert yaml.safe_load((root / "runs" / "p" / "seed-1" / "02_b.done").read_text()) == {
        "wrote": ["class_unlearning.csv"], "params": {"SEED": 1}}

    (repo / "sweep.yaml").write_text("profile: p\nnotebooks: [01_a, 02_b]\ngrid: {SEED: [0, 1]}\n")
    monkeypatch.setitem(S._OWN_ENV, "MALLOC_TRIM_THRESHOLD_", None)  # as if this command had none: the nannies set it
    S.main([str(repo / "sweep.yaml"), "--workers", "2"])  # the command line's default: a LocalCluster, with nannies
    out = capsys.readouterr().out
    assert "dask: tcp://127.0.0.1:" in out and "[4/4] done " in out and "seed-1: ok" in out
    assert _results(repo) == external
    assert "contrastive" in (repo / "results" / "p" / "tables.md").read_text()


def test_a_resumed_sweep_merges_finished_rows_and_a_failure_writes_none(swept, cluster, monkeypatch):
    root, _, _, first = swept
    monkeypatch.setattr(S, "ROOT", root)
    cluster.ensure_workers(2, cluster.client)
    for name in ("training.csv", "class_unlearning.csv"):  # as if the client had died before merging
        (root / "results" / "p" / name).unlink()
    logs = []
    assert S.run_sweep_dask(SPEC, cluster.client, log=logs.append) == {"seed-0": "skipped", "seed-1": "skipped"}
    assert len(logs) == 4 and all(" skip  " in line and "rows merged" in line for line in logs)
    assert _results(root) == first  # nothing ran again; every row came back from the points' own CSVs

    point = root / "runs" / "p" / "seed-1"
    for nb in ("01_a", "02_b"):
        (point / f"{nb}.done").unlink()
    logs.clear()
    status = S.run_sweep_dask({**SPEC, "parameters": {"FAIL_AT": "01_a"}}, cluster.client, log=logs.append)
    # other parameters: seed 0 runs again (its markers are of the first sweep's), seed 1 fails
    assert status["seed-0"] == "ok" and "01_a failed" in status["seed-1"]
    assert "01_a cannot run seed 1" in status["seed-1"]  # the notebook's error, from its log
    assert any(" block " in line and "02_b not run: it needs 01_a" in line for line in logs)
    assert not (point / "01_a.done").exists() and not (point / "02_b.done").exists()
    assert _results(root) == first  # the failed task merged nothing (seed 0 wrote the same rows again)


def test_a_worker_lost_mid_notebook_is_replaced_and_every_row_lands_once(repo, cluster):
    cluster.ensure_workers(2, cluster.client)
    pids = repo / "pids"
    spec = {**SPEC, "grid": {"SEED": [0]}, "parameters": {"SLEEP": 4.0, "PIDS": str(pids)}}
    box = {}
    sweep = threading.Thread(target=lambda: box.update(S.run_sweep_dask(spec, cluster.client, retries=1,
                                                                         log=lambda msg: None)))
    sweep.start()
    deadline = time.time() + 120
    while not list(pids.glob("*")) and time.time() < deadline:
        time.sleep(0.1)
    started = list(pids.glob("*"))
    assert started, "no notebook started"
    victim = int(started[0].read_text())
    assert victim in [w.pid for w in cluster.workers]
    os.killpg(victim, signal.SIGKILL)  # the worker and the notebook it runs, mid-sleep
    sweep.join(timeout=180)
    assert not sweep.is_alive()
    assert box == {"seed-0": "ok"}
    assert len(list(pids.glob("*"))) == 2  # 01_a ran again, on the other worker
    assert int(next(p for p in pids.glob("*") if p != started[0]).read_text()) != victim
    assert pd.read_csv(repo / "results" / "p" / "training.csv").seed.tolist() == [0]
    assert sorted(pd.read_csv(repo / "results" / "p" / "class_unlearning.csv").method) == ["contrastive", "retrain"]


def test_a_notebook_writing_an_unlisted_file_fails_instead_of_losing_rows(repo, monkeypatch):
    def papermill(cmd, **kw):  # writes a registered file and one that cu.sweep.KEYS does not list
        folder = Path(yaml.safe_load(cmd[cmd.index("-y") + 1])["RESULTS_DIR"]) / "p"
        for name in ("training.csv", "extra.csv"):
            (folder / name).write_text("method,dataset,model,width,seed\noriginal,fake,m,1,0\n")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(S.subprocess, "run", papermill)
    res = S.run_task(str(repo), SPEC, {"SEED": 0}, "01_a", {})
    assert "wrote ['extra.csv'] under RESULTS_DIR, which cu.sweep.KEYS does not list" in res["status"]
    assert res["rows"] == {} and not (repo / "runs" / "p" / "seed-0" / "01_a.done").exists()
    assert not (repo / "results" / "p" / "training.csv").exists()


def test_slurm_cluster_job_script_comes_from_the_sweep_files_cluster_block(tmp_path):
    pytest.importorskip("dask_jobqueue")
    cfg = {"queue": "gpu-short", "cores": 6, "memory": "24GB", "gpus": 1, "walltime": "02:30:00", "jobs": 3,
           "job_script_prologue": ["source .venv/bin/activate"]}
    cluster = S.slurm_cluster(cfg, scheduler_options={"dashboard_address": None, "host": "127.0.0.1"},
                              log_directory=str(tmp_path))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p gpu-short", "#SBATCH -t 02:30:00", "#SBATCH --cpus-per-task=6", "#SBATCH --gres=gpu:1",
                 "source .venv/bin/activate", "--nthreads 1"):
        assert line in script, f"{line!r} not in\n{script}"
    assert "jobs" in cfg  # the sweep file's block is not consumed
    with pytest.raises(ValueError, match=r"lacks \['walltime'\]"):
        S.slurm_cluster({"cores": 1, "memory": "1GB"})


def test_a_done_marker_counts_only_for_the_parameters_it_ran_with(repo, monkeypatch):
    calls = []

    def papermill(cmd, **kw):  # a notebook that writes its training row
        params = yaml.safe_load(cmd[cmd.index("-y") + 1])
        calls.append(params)
        folder = Path(params["RESULTS_DIR"]) / "p"
        (folder / "training.csv").write_text(f"method,dataset,model,width,seed\noriginal,fake,m,1,{len(calls)}\n")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(S.subprocess, "run", papermill)
    spec = {**SPEC, "parameters": {"METHODS": ["contrastive"]}}
    assert S.run_task(str(repo), spec, {"SEED": 0}, "01_a", {})["status"] == "ok"
    assert S.run_task(str(repo), spec, {"SEED": 0}, "01_a", {})["status"] == "skipped"  # resumed: same parameters
    other = {**SPEC, "parameters": {"METHODS": ["all"]}}  # another sweep over the same grid
    assert S.run_task(str(repo), other, {"SEED": 0}, "01_a", {})["status"] == "ok"
    assert [c["METHODS"] for c in calls] == [["contrastive"], ["all"]]
    done = repo / "runs" / "p" / "seed-0" / "01_a.done"
    done.write_text("ok\n")  # a marker from before markers recorded parameters still counts as done
    assert S.run_task(str(repo), spec, {"SEED": 0}, "01_a", {})["status"] == "skipped"


def test_a_notebook_reads_results_written_before_and_returns_only_the_rows_it_changed(repo, monkeypatch):
    """Notebook 06 compares with the mia.csv that notebook 04 wrote in an earlier sweep: the point's folder gets a
    copy of results/<profile>/'s files; the rows copied in unchanged (other seeds', perhaps stale) are not
    returned for merging, and a file the point already has is never overwritten by the shared copy."""
    shared = repo / "results" / "p"
    pd.DataFrame([dict(method="original", dataset="fake", model="m", width=1, seed=s, epochs=1, acc_train=1.0,
                       acc_test=0.5, seconds=1.0) for s in (0, 1)]).to_csv(shared / "training.csv", index=False)

    def papermill(cmd, **kw):  # reads training.csv (both seeds), rewrites it with its own seed's row changed
        params = yaml.safe_load(cmd[cmd.index("-y") + 1])
        path = Path(params["RESULTS_DIR"]) / "p" / "training.csv"
        df = pd.read_csv(path)
        assert sorted(df.seed) == [0, 1], "the shared results are there to read"
        df.loc[df.seed == params["SEED"], "acc_test"] = 0.75
        df.to_csv(path, index=False)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(S.subprocess, "run", papermill)
    out = S.run_task(str(repo), SPEC, {"SEED": 0}, "01_a", {})
    assert out["status"] == "ok"
    rows = out["rows"]["training.csv"]
    assert list(rows.seed) == [0] and list(rows.acc_test) == [0.75]  # seed 1's copied row is not returned
    own = repo / "runs" / "p" / "seed-0" / "results" / "p" / "training.csv"
    shared_row = pd.read_csv(shared / "training.csv")
    shared_row.loc[:, "acc_test"] = 0.1  # the shared file changes; the point's own file must not be replaced
    shared_row.to_csv(shared / "training.csv", index=False)
    S._copy_inputs(shared, own.parent)
    assert 0.75 in set(pd.read_csv(own).acc_test)


def test_a_notebook_stopped_only_by_its_checks_is_a_finding_whose_rows_land_and_whose_dependants_run(repo, cluster):
    cluster.ensure_workers(2, cluster.client)
    spec, logs = {**SPEC, "parameters": {"FAIL_AT": "01_a checks"}}, []
    status = S.run_sweep_dask(spec, cluster.client, log=logs.append)
    assert status["seed-0"] == "ok" and status["seed-1"].startswith(S.CHECKS_FAILED)
    assert "seed 1 reproduces the claim: measured 0.4" in status["seed-1"]  # the failed claim, from the notebook
    assert sorted(pd.read_csv(repo / "results" / "p" / "training.csv").seed) == [0, 1]  # its rows were merged
    assert sorted(pd.read_csv(repo / "results" / "p" / "class_unlearning.csv").seed) == [0, 0, 1, 1]  # 02_b ran
    marker = yaml.safe_load((repo / "runs" / "p" / "seed-1" / "01_a.done").read_text())
    assert marker["wrote"] == ["training.csv"] and "seed 1 reproduces the claim" in marker["checks_failed"]
    assert any(" CHECK seed-1 01_a" in line and "1 rows merged" in line for line in logs)
    logs.clear()
    again = S.run_sweep_dask(spec, cluster.client, log=logs.append)  # resumed: done, and the finding still reported
    assert again["seed-0"] == "skipped" and again["seed-1"].startswith(f"{S.CHECKS_FAILED} (in an earlier run)")
    assert sorted(pd.read_csv(repo / "results" / "p" / "training.csv").seed) == [0, 1]


def test_a_grid_points_status_is_its_worst_notebook():
    checks, error = f"{S.CHECKS_FAILED}: a claim", "02_b failed (log: x): ValueError"
    assert S._point_status("skipped", "ok") == "ok" and S._point_status("ok", "skipped") == "ok"
    assert S._point_status("ok", checks) == checks and S._point_status(checks, "ok") == checks
    assert S._point_status(checks, error) == error and S._point_status(error, checks) == error
    assert S._point_status(error, "blocked") == error and not S.finished(error) and S.finished(checks)


def test_merge_methods_lets_only_those_methods_rows_into_results_and_keeps_the_rest_in_the_points_folder(
        repo, cluster, capsys):
    """Adding methods to seeds whose Original and Retrain were trained again: their reference rows must not
    replace the ones results/ pairs with the seed's earlier rows."""
    cluster.ensure_workers(2, cluster.client)
    logs = []
    status = S.run_sweep_dask({**SPEC, "merge_methods": ["contrastive"]}, cluster.client, log=logs.append)
    assert set(status.values()) == {"ok"}
    shared = pd.read_csv(repo / "results" / "p" / "class_unlearning.csv")
    assert sorted(zip(shared.method, shared.seed)) == [("contrastive", 0), ("contrastive", 1)]
    assert not (repo / "results" / "p" / "training.csv").exists()  # the Originals' rows: held back
    own = pd.read_csv(repo / "runs" / "p" / "seed-1" / "results" / "p" / "class_unlearning.csv")
    assert sorted(own.method) == ["contrastive", "retrain"]  # kept where the notebook wrote them
    assert sum("1 held back (merge_methods)" in line for line in logs) == 4  # 01_a's row and 02_b's retrain, per seed
    kept, held = S.only_methods({"x.csv": shared, "y.csv": pd.DataFrame({"seed": [0]})}, ["retrain"])
    assert held == 3 and all(df.empty for df in kept.values())


def test_merge_methods_must_be_a_list_of_names_and_needs_a_dask_backend(repo):
    sweep = repo / "configs" / "s.yaml"
    sweep.write_text(yaml.safe_dump({**SPEC, "merge_methods": "contrastive"}))
    with pytest.raises(ValueError, match="merge_methods must be a non-empty list"):
        S.load_sweep(sweep)
    sweep.write_text(yaml.safe_dump({**SPEC, "merge_methods": ["contrastive"]}))
    assert S.load_sweep(sweep)["merge_methods"] == ["contrastive"]
    with pytest.raises(SystemExit):
        S.main([str(sweep), "--cluster", "threads"])
    with pytest.raises(ValueError, match="Dask backends only"):  # the Python API refuses it too
        S.run_sweep(S.load_sweep(sweep), inline=True)


def test_a_kernel_that_died_before_running_a_cell_is_started_again_and_a_failing_cell_is_not(repo, monkeypatch):
    """Two kernels started at once can race for a port (nteract/papermill#511): papermill then fails before any
    cell ran, and the notebook is started again; a notebook that failed in a cell is not."""
    real, calls = subprocess.run, []

    def papermill(cmd, *, stdout, failures, **kw):
        calls.append(cmd)
        if len(calls) <= failures:  # what papermill prints when its kernel dies at start
            stdout.write(f"zmq.error.ZMQError: Address already in use\nRuntimeError: {S.KERNEL_START_FAILED}\n")
            return subprocess.CompletedProcess(cmd, 1)
        return real(cmd, stdout=stdout, **kw)

    point = repo / "runs" / "p" / "seed-1"
    monkeypatch.setattr(S.subprocess, "run", lambda cmd, **kw: papermill(cmd, failures=1, **kw))
    assert S.run_notebook(SPEC, {"SEED": 1}, "01_a") == "ok" and len(calls) == 2
    assert pd.read_csv(repo / "results" / "p" / "training.csv").seed.tolist() == [1]
    log = (point / "01_a.log").read_text()
    assert S.KERNEL_START_FAILED in log and f"start 2 of {S.KERNEL_STARTS}" in log  # both starts are in the log

    calls.clear()
    monkeypatch.setattr(S.subprocess, "run", lambda cmd, **kw: papermill(cmd, failures=S.KERNEL_STARTS, **kw))
    result = S.run_notebook(SPEC, {"SEED": 0}, "01_a")
    assert len(calls) == S.KERNEL_STARTS and result.startswith("01_a failed") and S.KERNEL_START_FAILED in result

    calls.clear()
    monkeypatch.setattr(S.subprocess, "run", lambda cmd, **kw: papermill(cmd, failures=0, **kw))
    result = S.run_notebook({**SPEC, "parameters": {"FAIL_AT": "01_a"}}, {"SEED": 1}, "01_a")
    assert len(calls) == 1 and "01_a cannot run seed 1" in result  # it failed in a cell: started once
