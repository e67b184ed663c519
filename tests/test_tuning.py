"""The tuning protocol (cu.tuning): the halves of the test set, the objective, the declared spaces, and a
study that records its trials in SQLite and resumes."""
import json

import pandas as pd
import pytest
import torch

from cu import tuning
from cu.data import class_split, random_split
from cu.experiment import PAPER_METHODS
from cu.results import upsert_csv


def test_halves_cut_each_test_part_in_two_disjoint_halves_fixed_whatever_the_run(data):
    for split in (class_split(data, 5), random_split(data, 50, seed=0), random_split(data, 50, seed=3)):
        val, rep = tuning.halves(split)
        for part in ("test_forget", "test_retain"):
            a, b, whole = getattr(val, part), getattr(rep, part), getattr(split, part)
            assert len(set(a.tolist()) & set(b.tolist())) == 0
            assert sorted(a.tolist() + b.tolist()) == whole.tolist()
            assert len(a) - len(b) in (0, 1)
        assert torch.equal(val.forget, split.forget) and torch.equal(val.retain, split.retain)
    # the same test set gives the same halves for every seed of the sample split (one permutation)
    v0, _ = tuning.halves(random_split(data, 50, seed=0))
    v3, _ = tuning.halves(random_split(data, 50, seed=3))
    assert torch.equal(v0.test_retain, v3.test_retain)


def test_the_objective_ranks_every_feasible_class_trial_above_every_infeasible_one():
    feasible_poor = tuning.score("class", {"acc_test_retain": 0.05, "acc_test_forget": 0.10}, 10)
    infeasible_good = tuning.score("class", {"acc_test_retain": 0.99, "acc_test_forget": 0.11}, 10)
    less_infeasible = tuning.score("class", {"acc_test_retain": 0.90, "acc_test_forget": 0.20}, 10)
    more_infeasible = tuning.score("class", {"acc_test_retain": 0.90, "acc_test_forget": 0.50}, 10)
    assert feasible_poor == pytest.approx(0.05)
    assert feasible_poor > infeasible_good and less_infeasible > more_infeasible
    # sample: keep test accuracy, bring forget accuracy to it (from either side)
    assert tuning.score("sample", {"acc_test": 0.8, "acc_train_forget": 0.8}, 10) == pytest.approx(0.8)
    assert tuning.score("sample", {"acc_test": 0.8, "acc_train_forget": 1.0}, 10) == pytest.approx(0.6)
    assert tuning.score("sample", {"acc_test": 0.8, "acc_train_forget": 0.6}, 10) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="expected 'class' or 'sample'"):
        tuning.score("both", {}, 10)


def test_the_declared_protocol_names_real_hyperparameters_for_every_method_of_the_paper():
    protocol = tuning.load_protocol()
    for task, methods in PAPER_METHODS.items():
        for m in methods:
            space, budget = tuning.space_for(protocol, m, task)
            assert space and budget >= 1
    with pytest.raises(ValueError, match=r"has no hyperparameter\(s\) \['learning_rate'\]"):
        tuning.space_for({"trials": {"sample": 3}, "spaces": {"sample": {"finetune": {"learning_rate": {"log": [1, 2]}}}}},
                         "finetune", "sample")
    with pytest.raises(ValueError, match="no search space for scrub"):
        tuning.space_for(protocol, "scrub", "sample")


def test_suggest_draws_each_kind_of_range():
    import optuna

    trial = optuna.trial.FixedTrial({"lr": 1e-3, "epochs": 2, "momentum": 0.9, "z": 0.5})
    space = {"lr": {"log": [1e-4, 1e-2]}, "epochs": {"int": [1, 3]}, "momentum": {"choice": [0.0, 0.9]},
             "z": {"float": [0.0, 1.0]}}
    assert tuning.suggest(trial, space) == {"lr": 1e-3, "epochs": 2, "momentum": 0.9, "z": 0.5}
    with pytest.raises(ValueError, match="unknown kind 'grid'"):
        tuning.suggest(trial, {"lr": {"grid": [1, 2]}})


def test_a_study_scores_trials_on_the_validation_half_records_them_and_resumes(data, original, tmp_path):
    split = random_split(data, 60, seed=0)
    space = {"lr": {"log": [1e-3, 1e-1]}, "epochs": {"int": [1, 1]}}
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    seen = []
    kw = dict(fixed={"seed": 0, "track_size": 0}, storage=storage, study_name="s", log=seen.append)
    study = tuning.tune("finetune", original, data, split, space, 2, **kw)
    assert len(study.trials) == 2 and len(seen) == 2
    t = study.trials[0]
    # the score is the protocol's objective of the accuracies stored with the trial
    assert t.value == pytest.approx(tuning.score("sample", t.user_attrs, 10))
    assert t.user_attrs["stopped"] == "fixed"
    study = tuning.tune("finetune", original, data, split, space, 3, **kw)  # resumed from SQLite: one more
    assert len(study.trials) == 3 and len(seen) == 3
    rows = tuning.trial_rows(study, "finetune", {"dataset": "digits"}, "sample")
    assert [r["trial"] for r in rows] == [0, 1, 2] and all(json.loads(r["params"])["epochs"] == 1 for r in rows)
    assert tuning.best_params(study) == max(study.trials, key=lambda t: t.value).params


def test_a_study_whose_storage_is_lost_restarts_from_its_recorded_trials(data, original, tmp_path):
    split = random_split(data, 60, seed=0)
    space = {"lr": {"log": [1e-3, 1e-1]}, "epochs": {"int": [1, 1]}}
    ident = {"dataset": "digits", "model": "resnet18", "width": 16, "seed": 0}
    csv = tmp_path / "tuning_trials.csv"
    written = []

    def record(study, trial):  # what the command line does after each trial
        written.append(trial.number)
        upsert_csv(csv, tuning.trial_rows(study, "finetune", ident, "sample"), key=tuning.TRIAL_KEY)

    kw = dict(fixed={"seed": 0, "track_size": 0}, log=lambda m: None)
    first = tuning.tune("finetune", original, data, split, space, 2, storage=f"sqlite:///{tmp_path / 'a.db'}",
                        study_name="s", on_trial=record, **kw)
    assert written == [0, 1]  # each trial's row is on disk as soon as it finished
    recorded = tuning.recorded_trials(csv, "finetune", ident, "sample")
    assert tuning.recorded_trials(csv, "finetune", {**ident, "seed": 1}, "sample") == []
    ran = []
    again = tuning.tune("finetune", original, data, split, space, 3, storage=f"sqlite:///{tmp_path / 'b.db'}",
                        study_name="s", recorded=recorded, on_trial=lambda s, t: ran.append(t.number), **kw)
    assert ran == [2]  # the two recorded trials count toward the budget; one more is run
    assert [t.params for t in again.trials[:2]] == [t.params for t in first.trials]
    assert [t.value for t in again.trials[:2]] == pytest.approx([t.value for t in first.trials])
    rows = tuning.trial_rows(again, "finetune", ident, "sample")
    assert [r["trial"] for r in rows] == [0, 1, 2]
    assert rows[0]["acc_test"] == pytest.approx(first.trials[0].user_attrs["acc_test"])
    gappy = [r for r in recorded if r["trial"] == 0] + [{**r, "trial": 2} for r in recorded if r["trial"] == 1]
    resumed = tuning.tune("finetune", original, data, split, space, 3, storage=f"sqlite:///{tmp_path / 'd.db'}",
                          study_name="s", recorded=gappy, **kw)  # trial 1 of that study was killed, never finished
    assert [r["trial"] for r in tuning.trial_rows(resumed, "finetune", ident, "sample")] == [0, 2, 3]
    with pytest.raises(ValueError, match="the space changed since"):
        tuning.tune("finetune", original, data, split, {"lr": {"log": [1e-3, 1e-1]}}, 3,
                    storage=f"sqlite:///{tmp_path / 'c.db'}", study_name="s", recorded=recorded, **kw)


def test_a_study_shared_by_several_processes_stops_at_its_budget_counted_over_all(data, original, tmp_path):
    import optuna

    split = random_split(data, 60, seed=0)
    space = {"lr": {"log": [1e-3, 1e-1]}, "epochs": {"int": [1, 1]}}
    dists = tuning.distributions(space)
    ran = []

    def other_process_finishes_two(study, trial):  # while this process ran its first trial
        ran.append(trial.number)
        if len(ran) == 1:
            for lr in (1e-3, 1e-2):
                study.add_trial(optuna.trial.create_trial(params={"lr": lr, "epochs": 1}, distributions=dists,
                                                          value=0.5))

    study = tuning.tune("finetune", original, data, split, space, 3, fixed={"seed": 0, "track_size": 0},
                        storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s", log=lambda m: None,
                        on_trial=other_process_finishes_two)
    assert ran == [0] and len(study.trials) == 3  # not 3 of its own on top of the other's 2


def test_a_process_joining_a_study_whose_trial_is_running_draws_another_point(data, original, tmp_path):
    split = random_split(data, 60, seed=0)
    space = {"lr": {"log": [1e-3, 1e-1]}, "epochs": {"int": [1, 1]}}
    kw = dict(fixed={"seed": 0, "track_size": 0}, study_name="s", log=lambda m: None)
    alone = tuning.tune("finetune", original, data, split, space, 1, storage=f"sqlite:///{tmp_path / 'a.db'}", **kw)
    import optuna

    shared = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'b.db'}", direction="maximize")
    shared.sampler = optuna.samplers.TPESampler(seed=0)
    running = shared.ask()  # another process's trial, drawn as that process would (seed 0, none finished)
    tuning.suggest(running, space)
    joined = tuning.tune("finetune", original, data, split, space, 1, storage=f"sqlite:///{tmp_path / 'b.db'}", **kw)
    assert running.params == alone.trials[0].params  # the other process drew what a lone study draws first
    assert joined.trials[1].params != running.params  # this one did not draw it again


def test_tuned_settings_are_read_back_for_name_tuned_entries(tmp_path):
    path = tmp_path / "tuned_hparams.csv"
    ident = {"dataset": "digits", "model": "resnet18", "width": 16, "seed": 1}
    with pytest.raises(FileNotFoundError, match="python -m cu.tuning configs/<profile>.yaml --task sample --methods fisher"):
        tuning.with_tuned({}, ["fisher:tuned"], path, ident, "sample")
    pd.DataFrame([{"method": "fisher", "dataset": "digits", "model": "resnet18", "width": 16, "seed": 0,
                   "task": "sample", "hparams": json.dumps({"alpha": 3e-8})}]).to_csv(path, index=False)
    out = tuning.with_tuned({"fisher": {"chunk": 8}}, ["contrastive", "fisher:tuned"], path, ident, "sample")
    assert out == {"fisher": {"chunk": 8}, "fisher:tuned": {"alpha": 3e-8}}  # seed 0's choice, applied to seed 1
    with pytest.raises(ValueError, match="no tuned setting of finetune"):
        tuning.with_tuned({}, ["finetune:tuned"], path, ident, "sample")
    assert tuning.setting_of("fisher:tuned") == "tuned" and tuning.setting_of("fisher") == "paper"


def test_the_setting_column_has_one_rule_references_first():
    assert [tuning.setting_of(n) for n in ("original", "retrain", "retrain (held out)", "retrain_like", "unsir",
                                           "contrastive:validated")] == \
        ["reference", "reference", "reference", "paper", "paper", "validated"]


def test_evaluating_several_halves_at_once_equals_evaluating_each(data, original):
    from cu.experiment import evaluate
    from cu.training import accuracy

    for split in (class_split(data, 5), random_split(data, 50, seed=0)):
        val, rep = tuning.halves(split)
        whole, v, r = evaluate(original, data, split, val, rep)
        assert evaluate(original, data, rep) == r and evaluate(original, data, split) == whole
        assert whole["acc_train_forget"] == pytest.approx(accuracy(original, data, "train", split.forget))
        test = "acc_test_retain" if split.task == "class" else "acc_test"
        idx = split.test_retain if split.task == "class" else split.test
        assert whole[test] == pytest.approx(accuracy(original, data, "test", idx))
        # the halves' accuracies are the whole's, weighted by their sizes
        n_v = len(val.test_retain if split.task == "class" else val.test)
        n_r = len(idx) - n_v
        assert (v[test] * n_v + r[test] * n_r) / len(idx) == pytest.approx(whole[test])


def test_the_command_line_writes_to_a_scratch_results_dir_and_a_resume_in_the_main_one_records_every_trial(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text("PROFILE: tiny\nDATASET: digits\nWIDTH: 4\nEPOCHS: 1\nN_FORGET: 30\n")
    (tmp_path / "protocol.yaml").write_text("trials: {sample: 2, class: 2}\nspaces:\n  sample:\n"
                                            "    finetune: {lr: {log: [1.0e-3, 1.0e-1]}, epochs: {int: [1, 1]}}\n")
    argv = ["cu.tuning", "tiny.yaml", "--task", "sample", "--methods", "finetune", "--protocol", "protocol.yaml"]
    monkeypatch.setattr("sys.argv", argv + ["--results-dir", "scratch"])
    tuning.main()
    scratch = pd.read_csv(tmp_path / "scratch" / "tiny" / "tuning_trials.csv")
    assert len(scratch) == 2 and (tmp_path / "scratch" / "tiny" / "tuned_hparams.csv").exists()
    assert not (tmp_path / "results").exists()  # nothing reached the main folder
    # the same study in the main folder: its 2 trials are in the shared storage, none is run again, and
    # both reach results/ with the choice
    monkeypatch.setattr("sys.argv", argv)
    tuning.main()
    main = pd.read_csv(tmp_path / "results" / "tiny" / "tuning_trials.csv")
    assert main.trial.tolist() == scratch.trial.tolist() and main.score.tolist() == scratch.score.tolist()
    chosen = pd.read_csv(tmp_path / "results" / "tiny" / "tuned_hparams.csv")
    assert chosen.n_trials.tolist() == [2] and chosen.hparams.tolist() == pd.read_csv(
        tmp_path / "scratch" / "tiny" / "tuned_hparams.csv").hparams.tolist()
