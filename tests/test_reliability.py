"""Reliability: explicit forget indices, empty splits, and interruption of a real training run."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import cu.unlearners as U
from cu.data import Split, index_split, make_split
from cu.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def test_index_split_partitions(data):
    s = index_split(data, [5, 3, 900])
    assert s.forget.tolist() == [3, 5, 900] and s.task == "sample"
    assert len(s.forget) + len(s.retain) == len(data.y_train)
    assert set(s.forget.tolist()).isdisjoint(s.retain.tolist())
    assert make_split(data, "sample", forget_indices="[3, 5, 900]").forget.tolist() == [3, 5, 900]
    assert "3 given samples" in s.describe()


@pytest.mark.parametrize("bad, match", [
    ([1, 2, 2], r"\[2\] appear more than once"),
    ([0, 1437], r"\[1437\] are out of range: digits has training positions 0\.\.1436"),
    ([-1], r"\[-1\] are out of range"),
    ([], "forget_indices is empty"),
    ([1, "x"], "forget_indices"),
    (7, "expected a list of training-set positions"),
])
def test_index_split_rejects_bad_indices(data, bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        index_split(data, bad)


def test_index_split_must_retain_something(data):
    with pytest.raises(ValueError, match="at least one must be retained"):
        index_split(data, list(range(len(data.y_train))))


def test_unlearning_an_empty_retain_or_forget_set_is_refused(data):
    original = build_model("resnet18", 10, 1, width=4)  # refused before any training: any model will do
    n = len(data.y_train)
    everything, nothing = torch.arange(n), torch.empty(0, dtype=torch.long)
    test = torch.arange(len(data.y_test))
    no_retain = Split("sample", everything, nothing, nothing, test, data.num_classes)
    with pytest.raises(ValueError, match="retains no training samples"):
        U.run("contrastive", original, data, no_retain)
    no_forget = Split("sample", nothing, everything, nothing, test, data.num_classes)
    with pytest.raises(ValueError, match="forgets no training samples"):
        U.run("finetune", original, data, no_forget)


# A real training run in a child process: the Original of a tiny recipe, cached in argv[1]. With argv[2]
# set, it announces the optimiser step it reached so that the parent can kill it mid-training.
CHILD = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from cu.datasets import load_dataset
    from cu.training import TrainConfig, train_cached
    if len(sys.argv) > 2:
        step, n = torch.optim.SGD.step, [0]
        def announcing(self, *a, **k):
            n[0] += 1
            if n[0] == int(sys.argv[2]):
                print("step", n[0], flush=True)
            return step(self, *a, **k)
        torch.optim.SGD.step = announcing
    data = load_dataset("digits").to("cpu")
    model, _ = train_cached(data, "resnet18", 4, 1, TrainConfig(epochs=4, lr=0.05, seed=0), cache_dir=sys.argv[1],
                            progress=False)
    print("sum", sum(float(p.double().sum()) for p in model.state_dict().values()), flush=True)
""")


def _child(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, *map(str, args)], stdout=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, **kw)


def _sum_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("sum "))


def test_killing_a_training_run_leaves_no_checkpoint_and_a_rerun_resumes_to_the_same_model(tmp_path):
    killed = tmp_path / "killed"
    proc = _child(killed, 20)  # 4 epochs of 12 steps: killed in epoch 2
    assert proc.stdout.readline().strip() == "step 20"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    finished = [p for p in killed.glob("*.pt") if not p.name.endswith(".partial.pt")]
    assert not finished, "a killed run must not leave a checkpoint behind"
    assert len(list(killed.glob("*.partial.pt"))) == 1, "a killed run keeps its state after its last finished epoch"

    rerun = _child(killed)
    out_rerun = rerun.communicate(timeout=300)[0]
    fresh = _child(tmp_path / "fresh")
    out_fresh = fresh.communicate(timeout=300)[0]
    assert rerun.returncode == 0 and fresh.returncode == 0
    assert "resuming after epoch 1 of 4" in out_rerun and "resuming" not in out_fresh
    assert _sum_line(out_rerun) == _sum_line(out_fresh)  # same parameters, bit for bit
    assert len(list(killed.glob("*.pt"))) == 1 and not list(killed.glob("*.partial.pt"))

    loaded = _child(killed)  # a third run loads the cached model instead of training
    assert loaded.communicate(timeout=300)[0].split() == out_fresh.split()


def test_an_interrupted_sweep_resumes_after_its_last_finished_notebook(tmp_path, monkeypatch):
    import cu.sweep as S

    monkeypatch.setattr(S, "ROOT", tmp_path)
    spec = {"profile": "p", "notebooks": ["01_a", "02_b"], "grid": {"SEED": [0]}, "parameters": {}}
    calls = []

    def interrupted(cmd, **kw):
        calls.append(cmd[3])
        if len(calls) == 2:
            raise KeyboardInterrupt  # the sweep is stopped while the second notebook runs
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(S.subprocess, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        S.run_point(spec, {"SEED": 0})
    out = tmp_path / "runs" / "p" / "seed-0"
    assert (out / "01_a.done").exists() and not (out / "02_b.done").exists()

    calls.clear()
    monkeypatch.setattr(S.subprocess, "run", lambda cmd, **kw: calls.append(cmd[3]) or
                        subprocess.CompletedProcess(cmd, 0))
    assert S.run_point(spec, {"SEED": 0}) == ("seed-0", "ok")
    assert calls == ["notebooks/02_b.ipynb"]  # the finished notebook is not run again


def test_a_failed_notebook_is_reported_with_its_log(tmp_path, monkeypatch):
    import cu.sweep as S

    monkeypatch.setattr(S, "ROOT", tmp_path)
    spec = {"profile": "p", "notebooks": ["01_a"], "grid": {"SEED": [1]}, "parameters": {}}

    def failing(cmd, stdout=None, **kw):
        stdout.write("Traceback\nValueError: forget_class=12 is out of range\n")
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(S.subprocess, "run", failing)
    name, status = S.run_point(spec, {"SEED": 1})
    assert "01_a failed" in status and "forget_class=12 is out of range" in status
    assert not (tmp_path / "runs" / "p" / "seed-1" / "01_a.done").exists()


def test_method_list_parses_papermill_values_and_checks_tasks():
    from cu.experiment import PAPER_METHODS, method_list

    assert method_list(None, "sample") == ["retrain"] + PAPER_METHODS["sample"]
    assert method_list('["contrastive"]', "class") == ["retrain", "contrastive"]
    assert method_list("contrastive, neggrad", "sample") == ["retrain", "contrastive", "neggrad"]
    with pytest.raises(ValueError, match="unsir does not do sample unlearning"):
        method_list(["contrastive", "unsir"], "sample")
    assert method_list(["contrastive", "unsir"], "sample", skip_other_tasks=True) == ["retrain", "contrastive"]
    with pytest.raises(ValueError, match="unknown unlearning method .contrastiv.; valid names: .*boundary_expansion"):
        method_list(["contrastiv"], "class", skip_other_tasks=True)
    with pytest.raises(TypeError, match="expected a list of method names"):
        method_list(5, "class")


def test_bool_parameters_read_papermill_text():
    """papermill's `-p MIA_ALL false` passes the text 'false', which Python reads as true: notebook 04 then ran
    every attack feature (found in stop 35). as_bool reads it as False and rejects what is neither."""
    from cu.experiment import as_bool

    assert [as_bool(v, "X") for v in (True, False, 1, 0, "false", "False", " no ", "TRUE", "yes", "on", "0")] == \
        [True, False, True, False, False, False, False, True, True, True, False]
    for bad in ("maybe", 2, None, ""):
        with pytest.raises(TypeError, match=r"X=.*expected True or False \(papermill: -p X False"):
            as_bool(bad, "X")


def test_every_bool_notebook_parameter_goes_through_as_bool():
    """A bool parameter of a notebook is read with as_bool before use: PROGRESS and DOWNLOAD by
    cu.experiment.prepare (and run_methods), the others in the notebook's own code."""
    import json
    import re

    from cu.experiment import prepare, run_methods
    from cu.training import TrainConfig

    root = Path(__file__).resolve().parents[1]
    prepared = {"PROGRESS", "DOWNLOAD"}
    for kw, name in (({"progress": "maybe"}, "PROGRESS"), ({"download": "maybe"}, "DOWNLOAD")):
        with pytest.raises(TypeError, match=f"{name}='maybe': expected True or False"):
            prepare("digits", None, "resnet18", 8, TrainConfig(), "cpu", None, **kw)
    for kw, name in (({"progress": "maybe"}, "PROGRESS"), ({"retime": "maybe"}, "RETIME")):
        with pytest.raises(TypeError, match=f"{name}='maybe': expected True or False"):
            run_methods([], None, None, None, {}, TrainConfig(), **kw)
    for nb_path in sorted((root / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb_path.read_text())["cells"]
        params = next("".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", []))
        code = "\n".join("".join(c["source"]) for c in cells
                         if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
        for name in re.findall(r"^(\w+): bool =", params, re.M):
            if name not in prepared:
                assert f'{name} = as_bool({name}, "{name}")' in code, f"{nb_path.name}: {name} is not read with as_bool"


def test_retime_runs_every_method_again_instead_of_reading_the_cache(data, original, tmp_path, monkeypatch):
    """Notebook 05's RETIME: without it a cached method is loaded with the time recorded when it
    was computed; with it every method, Retrain included (no checkpoint cache), runs again here."""
    from cu.experiment import run_methods
    from cu.training import TrainConfig

    calls = []
    real_run = U.run

    def counting(name, *args, **kw):
        cfg = kw.get("config")
        calls.append((name, kw.get("cache_dir", getattr(cfg, "cache_dir", "n/a"))))
        return real_run(name, *args, **kw)

    monkeypatch.setattr(U, "run", counting)
    split = make_split(data, "sample", n_forget=20, seed=0)
    ident = dict(dataset="digits", model="resnet18", width=8, seed=0)
    recipe = TrainConfig(epochs=1, lr=0.05, seed=0)
    hp = {"neggrad": {"max_passes": 1}}
    first, _, recs = run_methods(["retrain", "neggrad"], original, data, split, ident, recipe, hp, tmp_path)
    again, _, cached = run_methods(["retrain", "neggrad"], original, data, split, ident, recipe, hp, tmp_path)
    assert [n for n, _ in calls] == ["retrain", "neggrad", "retrain"]   # neggrad came from the cache
    assert calls[0][1] == calls[2][1] == tmp_path                        # Retrain uses its checkpoint cache
    assert cached["neggrad"].seconds == recs["neggrad"].seconds          # ... with the recorded time
    calls.clear()
    retimed, _, fresh = run_methods(["retrain", "neggrad"], original, data, split, ident, recipe, hp, tmp_path,
                                    retime=True)
    assert [n for n, _ in calls] == ["retrain", "neggrad"]
    assert calls[0][1] is None                                           # Retrain trained again
    assert [r["acc_train_forget"] for r in retimed] == [r["acc_train_forget"] for r in first]  # same models
    assert len({frozenset(r) for r in first}) == 1  # every row has the same columns (the notebooks' csv_cols)


def test_a_sweep_runs_notebooks_when_what_they_need_is_done(tmp_path, monkeypatch):
    import threading
    import time

    import cu.sweep as S

    monkeypatch.setattr(S, "ROOT", tmp_path)
    spec = {"profile": "p", "notebooks": ["01_a", "02_b", "03_c", "04_d"], "grid": {"SEED": [0, 1]},
            "after": {"03_c": ["01_a"], "04_d": ["02_b", "03_c"]}, "parameters": {}}
    events, lock, running, overlap = [], threading.Lock(), set(), []

    def fake(spec, point, nb, dry_run=False, threads=None, inline=False):
        with lock:
            events.append(("start", point["SEED"], nb))
            running.add((point["SEED"], nb))
            overlap.append(set(running))
        time.sleep(0.05)
        with lock:
            running.discard((point["SEED"], nb))
            events.append(("end", point["SEED"], nb))
        return "failed: boom" if (point["SEED"], nb) == (1, "02_b") else "ok"

    monkeypatch.setattr(S, "run_notebook", fake)
    status = S.run_sweep(spec, jobs=2, log=lambda msg: None)

    def at(kind, seed, nb):
        return events.index((kind, seed, nb))

    for seed in (0, 1):
        assert at("end", seed, "01_a") < at("start", seed, "02_b") and at("end", seed, "01_a") < at("start", seed, "03_c")
    assert at("end", 0, "02_b") < at("start", 0, "04_d") > at("end", 0, "03_c")
    assert {(0, "02_b"), (0, "03_c")} in overlap  # independent notebooks of one point run side by side
    assert max(len(r) for r in overlap) <= 2  # never more than --jobs at once
    assert ("start", 1, "04_d") not in events  # what needs a failed notebook is not run
    assert status["seed-0"] == "ok" and "boom" in status["seed-1"]


def test_a_sweep_rejects_an_after_that_cannot_be_run():
    import cu.sweep as S

    spec = {"notebooks": ["01_a", "02_b"], "after": {"01_a": ["02_b"], "02_b": ["01_a"]}}
    with pytest.raises(ValueError, match="cycle"):
        S.needs(spec)
    with pytest.raises(ValueError, match=r"names \['03_x'\], which are not in its notebooks"):
        S.needs({"notebooks": ["01_a"], "after": {"01_a": ["03_x"]}})
    assert S.needs({"notebooks": ["01_a", "02_b"]}) == {"01_a": [], "02_b": ["01_a"]}


def test_every_profile_names_real_methods_and_hyperparameters():
    """A typo in a profile's HPARAMS would fail only hours into a CIFAR run; here it fails at once."""
    from pathlib import Path

    import yaml

    from cu import unlearners
    from cu.experiment import base_name

    profiles = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))
    assert profiles
    for path in profiles:
        for name, hp in (yaml.safe_load(path.read_text()).get("HPARAMS") or {}).items():
            assert base_name(name) in unlearners.UNLEARNERS, f"{path.name}: unknown method {name}"
            unlearners.make_config(base_name(name), **(hp or {}))  # raises on an unknown hyperparameter


def test_every_profile_reads_its_data_from_the_repositorys_data_folder():
    """A profile must not point at a folder of the machine that wrote it (it once read ../../shared/data):
    DATA_ROOT, relative to notebooks/ as papermill --cwd notebooks runs it, is the repository's data/."""
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    for path in sorted((repo / "configs").glob("*.yaml")):
        root = yaml.safe_load(path.read_text()).get("DATA_ROOT")
        if root is not None:
            assert (repo / "notebooks" / root).resolve() == repo / "data", f"{path.name}: DATA_ROOT {root}"


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("[0-9]*.ipynb")))
def test_papermill_reads_every_parameter_of_every_notebook(notebook):
    """`papermill --help-notebook` and papermill's "unknown parameter" warnings read the parameters cell with a
    pattern that a comment holding '=' breaks (06's "k = 0..N_MODELS-1" made it skip SEED and N_MODELS and
    warn that the sweep passed unknown parameters): every name the cell assigns must be one papermill reads."""
    import ast
    import json

    import papermill

    nb = json.loads((ROOT / "notebooks" / notebook).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = {t.id for node in ast.parse("".join(cell["source"])).body
                for t in (node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)])
                if isinstance(t, ast.Name)}
    assert assigned, f"{notebook}: empty parameters cell"
    assert set(papermill.inspect_notebook(str(ROOT / "notebooks" / notebook))) == assigned


def test_a_methods_own_diagnostics_reach_its_results_row(original, data, tmp_path):
    """Boundary Expansion's shadow_rate and Boundary Shrink's attack_success_rate (issue #16: record them in the
    results) are columns of every row, NaN where a method has none, equal to what the method recorded."""
    import math

    from cu.experiment import RECORDED_EXTRAS, run_methods
    from cu.training import TrainConfig

    split = make_split(data, "class", forget_class=5, seed=0)
    ident = dict(dataset="digits", model="resnet18", width=8, seed=0)
    hp = {"boundary_expansion": {"epochs": 1}, "boundary_shrink": {"epochs": 1}}
    rows, _, recs = run_methods(["boundary_expansion", "boundary_shrink"], original, data, split, ident,
                                TrainConfig(epochs=1, seed=0), hp, None)
    by = {r["method"]: r for r in rows}
    assert set(RECORDED_EXTRAS) <= set(by["original"]) and len({frozenset(r) for r in rows}) == 1
    assert by["boundary_expansion"]["shadow_rate"] == recs["boundary_expansion"].extra["shadow_rate"]
    assert by["boundary_shrink"]["attack_success_rate"] == recs["boundary_shrink"].extra["attack_success_rate"]
    assert 0 <= by["boundary_expansion"]["shadow_rate"] <= 1 and 0 <= by["boundary_shrink"]["attack_success_rate"] <= 1
    assert math.isnan(by["boundary_shrink"]["shadow_rate"]) and math.isnan(by["original"]["attack_success_rate"])
