"""cu.sweep --cluster inline: notebooks executed in this process (no papermill), for a machine without Jupyter."""
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

import cu.sweep as S

PARAMETERS = '''PROFILE: str = "default"
SEED: int = 0
RESULTS_DIR: str = "../results"
FAIL: bool = False
CHECK: bool = False'''

CODE = '''from pathlib import Path
from IPython.display import Markdown, display
from cu.results import upsert_csv
if FAIL and SEED == 1:
    raise ValueError("seed 1 cannot run")
upsert_csv(f"{RESULTS_DIR}/{PROFILE}/training.csv", [dict(method="original", dataset="fake", model="m", width=1,
           seed=SEED, epochs=EPOCHS, acc_train=1.0, acc_test=0.5, seconds=1.0)])
print("cwd", Path.cwd().name)
display(Markdown(f"**seed {SEED}**"))
if CHECK and SEED == 1:
    from cu.checks import Checks
    c = Checks("a")
    c.claim("seed 1 reproduces the claim", False, "0.4")
    c.done()'''


def _cell(src, tags=()):
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "execution_count": None, "outputs": [],
            "source": src}


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# a"}, _cell(PARAMETERS, ["parameters"]),
                    _cell(CODE), _cell("{'last': SEED}")],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "notebooks" / "01_a.ipynb").write_text(json.dumps(nb))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "p.yaml").write_text("PROFILE: p\nEPOCHS: 7\n")  # EPOCHS: injected, not in the notebook
    monkeypatch.setattr(S, "ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_inline_runs_each_notebook_with_the_profile_and_grid_injected_as_papermill_does(repo):
    spec = {"profile": "p", "notebooks": ["01_a"], "grid": {"SEED": [0, 1]}, "parameters": {}}
    status = S.run_sweep(spec, inline=True)
    assert status == {"seed-0": "ok", "seed-1": "ok"}
    df = pd.read_csv(repo / "results" / "p" / "training.csv")
    assert sorted(df.seed) == [0, 1] and set(df.epochs) == {7}  # RESULTS_DIR, PROFILE and EPOCHS from the profile
    log = (repo / "runs" / "p" / "seed-1" / "01_a.log").read_text()
    assert "cwd notebooks" in log and "**seed 1**" in log and "{'last': 1}" in log
    executed = json.loads((repo / "runs" / "p" / "seed-1" / "01_a.ipynb").read_text())
    tags = [c["metadata"].get("tags", []) for c in executed["cells"]]
    assert tags.index(["injected-parameters"]) == tags.index(["parameters"]) + 1
    assert "SEED = 1" in executed["cells"][2]["source"]
    assert S.run_sweep(spec, inline=True) == {"seed-0": "skipped", "seed-1": "skipped"}  # markers, as papermill's
    assert Path.cwd() == repo


def test_inline_reports_a_failing_notebook_and_a_spent_budget(repo):
    spec = {"profile": "p", "notebooks": ["01_a"], "grid": {"SEED": [0, 1]}, "parameters": {"FAIL": True}}
    status = S.run_sweep(spec, inline=True)
    assert status["seed-0"] == "ok" and "ValueError: seed 1 cannot run" in status["seed-1"]
    assert "ValueError: seed 1 cannot run" in (repo / "runs" / "p" / "seed-1" / "01_a.log").read_text()
    assert not (repo / "runs" / "p" / "seed-1" / "01_a.done").exists() and Path.cwd() == repo
    spec = {**spec, "parameters": {"FAIL": False}}
    status = S.run_sweep(spec, inline=True, budget_s=-1.0)  # spent before the first notebook
    assert all("not started: the budget" in s for s in status.values())
    with pytest.raises(ValueError, match="one notebook at a time"):
        S.run_sweep(spec, jobs=2, inline=True)


def test_inline_counts_failed_checks_as_a_finding_and_runs_what_needs_the_notebook(repo, capsys):
    (repo / "notebooks" / "02_b.ipynb").write_text((repo / "notebooks" / "01_a.ipynb").read_text())
    sweep = repo / "s.yaml"
    sweep.write_text("profile: p\nnotebooks: [01_a, 02_b]\ngrid: {SEED: [0, 1]}\nparameters: {CHECK: true}\n")
    S.main([str(sweep), "--cluster", "inline"])  # exits 0: no SystemExit
    out = capsys.readouterr().out
    assert "CHECK seed-1 01_a" in out and "1 of 2 grid points ran with failed checks" in out
    assert (repo / "runs" / "p" / "seed-1" / "02_b.done").exists()  # what needs 01_a ran
    marker = (repo / "runs" / "p" / "seed-1" / "01_a.done").read_text()
    assert "seed 1 reproduces the claim: measured 0.4" in marker
    assert sorted(pd.read_csv(repo / "results" / "p" / "training.csv").seed) == [0, 1]
    failing = repo / "f.yaml"
    failing.write_text(sweep.read_text().replace("CHECK: true", "FAIL: true"))
    with pytest.raises(SystemExit):  # a notebook that fails otherwise still fails the sweep
        S.main([str(failing), "--cluster", "inline"])


def test_two_sweeps_over_one_notebook_of_one_point_take_turns(repo, capsys):
    """A second sweep over a point and notebook that another sweep is running waits for it, then finds its marker."""
    import fcntl
    import threading
    import time

    spec = {"profile": "p", "notebooks": ["01_a"], "grid": {"SEED": [0]}, "parameters": {}}
    out_dir = repo / "runs" / "p" / "seed-0"
    out_dir.mkdir(parents=True)
    events, status = [], {}
    with open(out_dir / ".01_a.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # the first sweep, running 01_a of seed-0

        def second():
            status.update(S.run_sweep(spec, inline=True))
            events.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(1.0)
        assert not events and not (out_dir / "01_a.done").exists()  # waiting, not running beside it
        point = S.points(spec)[0]  # the first sweep finishes the notebook: its marker
        (out_dir / "01_a.done").write_text(yaml.safe_dump({"params": S.run_parameters(spec, point)}))
        events.append("first")
        fcntl.flock(fh, fcntl.LOCK_UN)
    t.join(60)
    assert events == ["first", "second"] and status == {"seed-0": "skipped"}
    assert "another sweep is running this notebook of this point" in capsys.readouterr().out
