import math

import pandas as pd
import pytest

from cu import report
from cu.report import aggregate, mean_ci, update_readme


def test_mean_ci_uses_student_t():
    v = pd.Series([0.80, 0.82, 0.84])
    # mean 82.0, sd 2.0, t(0.975, 2) = 4.303 -> half-width 4.303 * 2 / sqrt(3) = 4.97
    assert mean_ci(v, 100) == f"82.0 ± {4.302652729911275 * 2 / math.sqrt(3):.1f}"
    assert mean_ci(pd.Series([0.5]), 100) == "50.0"


def test_aggregate_keeps_groups_apart():
    df = pd.DataFrame({"method": ["retrain", "contrastive"] * 2, "dataset": "d", "model": "m", "width": 4,
                       "seed": [0, 0, 1, 1], "feature": ["loss", "loss", "entropy", "entropy"],
                       "mia_forget": [10.0, 20.0, 30.0, 40.0]})
    tables = aggregate(df, {"mia_forget": "D_tr^u"}, 1, ("feature",))
    assert len(tables) == 2  # one per feature, not averaged across features
    assert all(list(t.columns) == ["retrain", "contrastive"] for t in tables.values())
    cells = {title.split("feature ")[1].split(";")[0]: t.loc["D_tr^u"].tolist() for title, t in tables.items()}
    assert cells == {"entropy": ["30.0", "40.0"], "loss": ["10.0", "20.0"]}


def test_update_readme_needs_markers(tmp_path):
    readme = tmp_path / "README.md"
    other = "<!-- results:cifar10-cpu:start -->\nkept\n<!-- results:cifar10-cpu:end -->\n"
    readme.write_text("a\n<!-- results:default:start -->\nold\n<!-- results:default:end -->\n" + other + "b\n")
    update_readme(readme, "new\n")
    assert readme.read_text() == ("a\n<!-- results:default:start -->\nnew\n<!-- results:default:end -->\n"
                                  + other + "b\n")
    update_readme(readme, "cpu\n", profile="cifar10-cpu")
    assert "<!-- results:cifar10-cpu:start -->\ncpu\n<!-- results:cifar10-cpu:end -->" in readme.read_text()
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="lacks the markers"):
        update_readme(readme, "x")


def test_aggregate_counts_each_methods_seeds():
    # a baseline run on one seed beside methods run on three: the table must not imply three for all
    df = pd.DataFrame({"method": ["retrain", "contrastive"] * 3 + ["scrub"], "dataset": "d", "model": "m",
                       "width": 4, "seed": [0, 0, 1, 1, 2, 2, 0], "acc_test": [0.8, 0.7, 0.82, 0.72, 0.84, 0.74, 0.6]})
    (title, table), = aggregate(df, {"acc_test": "D_ts"}, 100).items()
    assert title.endswith("seeds 0, 1, 2")
    assert list(table.loc["seeds (n)"]) == ["3", "3", "1"]
    assert table.loc["D_ts", "scrub"] == "60.0" and "±" in table.loc["D_ts", "retrain"]


def test_the_mia_table_shows_the_gap_to_retrain_per_seed_and_says_when_the_attack_has_no_power(tmp_path):
    import pandas as pd

    from cu.report import markdown

    rows = []
    for seed, (o, r, c) in enumerate([(90, 70, 60), (80, 72, 66)]):
        for m, rate in (("original", o), ("retrain", r), ("contrastive", c)):
            rows.append(dict(method=m, dataset="d", model="m", width=8, seed=seed, mia_forget=rate, mia_retain=80,
                             mia_test=50, mia_auc=53, feature="softmax_sorted", classifier="svc"))
    pd.DataFrame(rows).to_csv(tmp_path / "mia.csv", index=False)
    text = markdown(tmp_path)
    gap = next(line for line in text.splitlines() if line.startswith("| D_tr^u gap to Retrain"))
    assert [c.strip() for c in gap.split("|")[2:5]] == ["14.0 ± 76.2", "0.0 ± 0.0", "-8.0 ± 25.4"]
    assert "**no power**" in text


def test_the_scorecard_applies_its_stated_rules_to_each_profile(tmp_path):
    import pandas as pd

    from cu.report import scorecard, verdict

    pd.DataFrame([
        dict(claim="forgets", source="T1", task="class", file="class_unlearning.csv", method="contrastive",
             metric="acc_train_forget", kind="value", paper_value=0.0, unit="%", rule="zero"),
        dict(claim="keeps", source="T1", task="class", file="class_unlearning.csv", method="contrastive",
             metric="acc_test_retain", kind="gap_to_retrain", paper_value=-1.0, unit="pt", rule="gap"),
        dict(claim="fast", source="T3", task="class", file="efficiency.csv", method="contrastive",
             metric="fraction_of_retrain", kind="value", paper_value=0.03, unit="ratio", rule="ratio"),
        dict(claim="to zero", source="F2", task="class", file="class_unlearning.csv", method="contrastive",
             metric="curve_zero_step", kind="value", paper_value=60, unit="batches", rule="ratio"),
    ]).to_csv(tmp_path / "paper_claims.csv", index=False)
    (tmp_path / "cifar10-cpu").mkdir()
    rows = [dict(method=m, dataset="cifar10", model="resnet18", width=16, seed=s, acc_test_retain=r, acc_train_forget=f,
                 acc_test_forget=0.0) for s in (0, 1) for m, r, f in (("retrain", 0.80, 0.0), ("contrastive", 0.73, 0.002))]
    pd.DataFrame(rows).to_csv(tmp_path / "cifar10-cpu" / "class_unlearning.csv", index=False)
    text = scorecard(tmp_path, ["cifar10-cpu", "cifar10-paper"])
    line = {r.split("|")[1].strip(): r for r in text.splitlines() if r.startswith("| ")}
    assert "0.2 ± 0.0 (2): reproduced" in line["forgets"]  # 0.2 % <= 1 %
    assert "-7.0 ± 0.0 (2): not reproduced" in line["keeps"]  # 6 pt from the paper's -1
    assert "–: not run here" in line["fast"]  # no efficiency.csv
    assert "–: not run here" in line["to zero"]  # a file written before the column existed
    df = pd.DataFrame(rows)
    df["curve_zero_step"] = [float("nan"), float("nan"), float("nan"), 90.0]  # seed 0 ran before: left out
    df.to_csv(tmp_path / "cifar10-cpu" / "class_unlearning.csv", index=False)
    line = {r.split("|")[1].strip(): r for r in scorecard(tmp_path, ["cifar10-cpu"]).splitlines() if r.startswith("| ")}
    assert "90.0 (1): reproduced" in line["to zero"]  # within a factor 2 of 60
    assert verdict("gap", -1.0, pd.Series([-3.9, -4.1])) == "partly"
    assert verdict("ratio", 0.03, pd.Series([0.05])) == "reproduced" and verdict("ratio", 0.03, pd.Series([0.2])) == "not reproduced"
    assert verdict("gap", 0.0, pd.Series([0.0, 20.0])).endswith("(wide CI)")


def test_the_forgetting_table_keeps_each_number_of_models_apart_and_shows_scores_to_three_decimals(tmp_path):
    from cu.report import markdown

    rows = [dict(method=m, setting="paper", dataset="d", model="m", width=8, seed=0, task="sample", n_forget=10,
                 n_models=n, forget_score=score, final_score=score / 2, eps_median=1.0, eps_mean=1.0, acc_retain=1.0,
                 acc_test=0.9, ulira_accuracy=0.5, ulira_auc=0.5, ulira_tpr_at_1fpr=0.01)
            for n in (4, 64) for m, score in (("contrastive", 0.1234 * n / 64), ("retrain (held out)", 0.5),
                                              ("original", 0.0))]
    pd.DataFrame(rows).to_csv(tmp_path / "forgetting.csv", index=False)
    text = markdown(tmp_path)
    assert "n_models 4;" in text and "n_models 64;" in text  # never averaged across model counts
    big = text.split("n_models 64;")[1]
    header = next(line for line in big.splitlines() if line.startswith("|  "))
    assert [c.strip() for c in header.split("|")[2:5]] == ["original", "retrain (held out)", "contrastive"]
    score = next(line for line in big.splitlines() if line.startswith("| forget score"))
    assert [c.strip() for c in score.split("|")[2:5]] == ["0.000", "0.500", "0.123"]


def test_the_regime_table_pairs_each_method_with_retrain_by_seed(tmp_path):
    from cu.report import regime

    def write(profile, rows, train=None):
        (tmp_path / profile).mkdir()
        pd.DataFrame(rows).to_csv(tmp_path / profile / "sample_unlearning.csv", index=False)
        if train is not None:
            pd.DataFrame(train).to_csv(tmp_path / profile / "training.csv", index=False)

    base = dict(dataset="cifar10", model="resnet18", width=16)
    # seeds 0, 1 have both; seed 2 has no Retrain and must not enter the mean or the gap
    rows = [dict(base, method="retrain", seed=s, acc_test=0.80 + 0.01 * s, acc_train_forget=0.85) for s in (0, 1)]
    rows += [dict(base, method="contrastive", seed=s, acc_test=0.70 + 0.01 * s, acc_train_forget=0.75) for s in (0, 1, 2)]
    rows += [dict(base, method="original", seed=s, acc_test=0.82, acc_train_forget=1.0) for s in (0, 1, 2)]
    train = [dict(base, method="original", seed=s, epochs=20, acc_train=0.99 + 0.002 * s) for s in (0, 1, 2)]
    write("short", rows, train)
    write("wide", [dict(base, width=64, method=m, seed=0, acc_test=a, acc_train_forget=1.0)
                   for m, a in (("retrain", 0.86), ("contrastive", 0.85))])
    text = regime(tmp_path, ["short", "wide", "absent"], methods=("contrastive", "contrastive:validated"))
    lines = [r for r in text.splitlines() if r.startswith("| `")]
    assert len(lines) == 2  # no validated rows, no folder for "absent"
    short = [c.strip() for c in lines[0].split("|")[1:-1]]
    # profile, model, epochs, Original train % (seeds 0-1 only), Original D_tr^u, Retrain D_ts, Retrain D_tr^u,
    # method, D_ts gap (-10 pt on both seeds), D_tr^u gap, seeds
    assert short[:3] == ["`short`", "resnet18 w16", "20"] and short[3].startswith("99.1 ± ")
    assert short[5].startswith("80.5 ± ") and short[8:] == ["-10.0 ± 0.0", "-10.0 ± 0.0", "0, 1"]
    wide = [c.strip() for c in lines[1].split("|")[1:-1]]
    assert wide[1] == "resnet18 w64" and wide[3] == "–" and wide[8] == "-1.0" and wide[-1] == "0"
    assert "No profile" in regime(tmp_path, ["wide"], methods=("ssd",))


def test_the_forgetting_reading_is_generated_per_run_and_says_when_the_mia_has_no_power(tmp_path):
    from cu.report import forgetting_reading

    ident = dict(dataset="digits", model="resnet18", width=16, seed=0, task="sample")
    rows = [dict(method=m, setting="paper", **ident, n_forget=100, n_models=n, forget_score=f, final_score=f,
                 eps_median=1.0, eps_mean=1.0, ulira_auc=0.9, ulira_tpr_at_1fpr=0.1, acc_retain=1.0, acc_test=0.98)
            for n in (8, 64) for m, f in [("retrain (held out)", 0.2), ("original", 0.0), ("contrastive", 0.01),
                                          ("fisher", 0.1)]]
    (tmp_path / "default").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "default" / "forgetting.csv", index=False)
    text = forgetting_reading(tmp_path)
    assert text.index("64 models per method") < text.index("8 models per method")  # the largest N first
    assert "Fisher (0.100) > Contrastive (0.010)" in text
    assert "No comparison with notebook 04" in text and "no power" not in text  # no mia.csv
    mia = [dict(method=m, **{k: v for k, v in ident.items() if k != "task"}, feature="softmax_sorted",
                classifier="svc", mia_forget=r, mia_auc=auc) for m, r, auc in
           [("original", 90.0, 48.0), ("retrain", 60.0, 50.0), ("contrastive", 70.0, 50.0), ("fisher", 61.0, 50.0)]]
    pd.DataFrame(mia).to_csv(tmp_path / "default" / "mia.csv", index=False)
    text = forgetting_reading(tmp_path)
    assert "**agrees**" in text and "**no power** here (the Original's AUC 48.0 %" in text
    pd.DataFrame([{**r, "mia_auc": 80.0} for r in mia]).to_csv(tmp_path / "default" / "mia.csv", index=False)
    assert "no power" not in forgetting_reading(tmp_path)
    assert "No profile has `forgetting.csv`" in forgetting_reading(tmp_path / "default")


def test_a_methods_diagnostics_get_a_row_only_where_recorded(tmp_path):
    from cu.report import markdown

    base = dict(dataset="cifar10", model="resnet18", width=16, acc_test_retain=0.8, acc_train_forget=0.0,
                acc_test_forget=0.0, seconds=1.0)
    rows = [dict(base, method="boundary_expansion", seed=s, shadow_rate=r, attack_success_rate=float("nan"))
            for s, r in ((0, 0.25), (1, 0.35))] + [dict(base, method="retrain", seed=0)]
    pd.DataFrame(rows).to_csv(tmp_path / "class_unlearning.csv", index=False)
    text = markdown(tmp_path)
    line = next(ln for ln in text.splitlines() if "shadow class" in ln)
    assert "30.0 ±" in line and "–" in line  # mean over two seeds, none for Retrain
    assert "FGSM" not in text  # no method recorded it


def test_the_tuned_settings_table_lists_each_choice_and_says_when_a_class_study_found_no_feasible_trial(tmp_path):
    import json

    from cu.report import markdown

    base = dict(dataset="cifar10", model="resnet18", width=16, seed=2, n_trials=8)
    rows = [dict(base, method="unsir", task="class", score=0.84, hparams=json.dumps({"repair_lr": 3.4e-4, "impair_lr": 4.9e-4})),
            dict(base, method="contrastive", task="class", score=0.85, hparams=json.dumps({"lr": 0.0017, "lambda_ce": 1.9})),
            dict(base, method="fisher", task="sample", score=0.66, hparams=json.dumps({"alpha": 1.27e-9}))]
    pd.DataFrame(rows).to_csv(tmp_path / "tuned_hparams.csv", index=False)
    text = markdown(tmp_path)
    lines = [ln for ln in text.splitlines() if ln.startswith("| class") or ln.startswith("| sample")]
    assert [ln.split("|")[2].strip() for ln in lines] == ["contrastive", "unsir", "fisher"]  # task, then paper order
    assert "impair_lr 0.00049, repair_lr 0.00034" in lines[1] and "| 8 " in lines[1] and "0.840" in lines[1]
    assert "alpha 1.27e-09" in lines[2]
    assert "no trial brought" not in text  # every class score is feasible
    pd.DataFrame([dict(rows[0], score=-0.5)]).to_csv(tmp_path / "tuned_hparams.csv", index=False)
    assert "no trial brought validation D_ts^u down to 1/C" in markdown(tmp_path)
    pd.DataFrame([{"method": "unsir", "task": "class", "hparams": "{}"}]).to_csv(tmp_path / "tuned_hparams.csv", index=False)
    assert "lacks the columns that cu.tuning writes (dataset, model, width, seed, n_trials, score)" in markdown(tmp_path)
    (tmp_path / "tuned_hparams.csv").unlink()
    assert "Tuned settings" not in markdown(tmp_path)


def test_the_scorecard_shows_the_newer_methods_beside_contrastive_paired_by_seed(tmp_path):
    import pandas as pd

    from cu.report import beyond_paper, scorecard

    folder = tmp_path / "cifar10-cpu"
    folder.mkdir()
    pd.DataFrame([dict(claim="keeps", source="T1", task="class", file="class_unlearning.csv", method="contrastive",
                       metric="acc_test_retain", kind="gap_to_retrain", paper_value=-1.0, unit="pt", rule="gap")]
                 ).to_csv(tmp_path / "paper_claims.csv", index=False)
    base = dict(dataset="cifar10", model="resnet18", width=16)
    rows = [dict(base, method="retrain", seed=0, acc_test=0.80, acc_train_forget=0.80, seconds=1000.0),
            dict(base, method="retrain", seed=1, acc_test=0.84, acc_train_forget=0.82, seconds=1000.0),
            dict(base, method="contrastive", seed=0, acc_test=0.78, acc_train_forget=0.75, seconds=100.0),
            dict(base, method="contrastive", seed=1, acc_test=0.80, acc_train_forget=0.77, seconds=50.0),
            dict(base, method="ssd", seed=0, acc_test=0.79, acc_train_forget=0.99, seconds=150.0),
            dict(base, method="ssd:tuned", seed=1, acc_test=0.83, acc_train_forget=0.90, seconds=25.0),
            dict(base, method="finetune", seed=0, acc_test=0.5, acc_train_forget=0.5, seconds=1.0)]
    pd.DataFrame(rows).to_csv(folder / "sample_unlearning.csv", index=False)
    text = beyond_paper(folder)
    header = next(line for line in text.splitlines() if line.startswith("| ") and "contrastive" in line)
    assert [c.strip() for c in header.split("|")[2:-1]] == ["contrastive", "ssd", "ssd:tuned"]  # no paper baseline (finetune)
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in text.splitlines() if line.startswith("| ") and "contrastive" not in line}
    assert cells["sample: D_ts minus Retrain's (pt)"] == ["-3.0 ± 12.7 (2)", "-1.0 (1)", "-1.0 (1)"]
    assert cells["sample: D_tr^u minus Retrain's (pt)"][1:] == ["19.0 (1)", "8.0 (1)"]  # each against its own seed's Retrain
    assert cells["sample: seconds / Contrastive's"][1:] == ["1.50 (1)", "0.50 (1)"]  # seed 0: 150/100; seed 1: 25/50
    assert cells["class: D_ts^r minus Retrain's (pt)"] == ["–", "–", "–"]  # no class file
    assert text in scorecard(tmp_path, ["cifar10-cpu"])
    pd.DataFrame([r for r in rows if not r["method"].startswith("ssd")]).to_csv(folder / "sample_unlearning.csv", index=False)
    assert beyond_paper(folder) == "" and "Beyond the paper" not in scorecard(tmp_path, ["cifar10-cpu"])


def test_results_are_parsed_once_per_version_of_the_file(tmp_path):
    import os

    from cu.report import read_results

    path = tmp_path / "sample_unlearning.csv"
    path.write_text("method,seed\nssd,0\n")
    first = read_results(path)
    first.loc[0, "method"] = "changed by the caller"
    assert read_results(path).method.tolist() == ["ssd"]  # a copy: the cached frame is untouched
    path.write_text("method,seed\nrl_,1\n")  # same size, rewritten (as a sweep's merge does)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert read_results(path).method.tolist() == ["rl_"]


def test_a_cross_profile_section_given_one_profiles_folder_names_the_root_to_give(tmp_path, monkeypatch, capsys):
    profile = tmp_path / "cifar10-cpu"
    profile.mkdir()
    (profile / "class_unlearning.csv").write_text("method,seed\n")
    monkeypatch.setattr("sys.argv", ["cu.report", str(profile), "--scorecard"])
    with pytest.raises(SystemExit):
        report.main()
    assert f"give its parent ({tmp_path})" in capsys.readouterr().err
