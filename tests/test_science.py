"""What a wrong implementation cannot pass: the termination rules, the attack's properties on a model
whose membership is known, the unlearning loss's effect, the checks cells, the caches' keys, the tables."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

import cu.checkpoints as ck
import cu.unlearners as U
from cu import checks
from cu.data import DeviceData, class_split, random_split
from cu.experiment import method_overrides, paper_table, run_cached
from cu.mia import mia_grid
from cu.results import Record, upsert_csv
from cu.training import TrainConfig, train_cached
from cu.unlearners import contrastive as C


# --------------------------------------------------------------------------- termination (Eq. 8 / Eq. 9)

def _fake_accuracy(monkeypatch, values: dict):
    """Make contrastive.accuracy return values[part]; record what it was asked for."""
    calls = []

    def acc(model, data, part, idx):
        calls.append((part, idx))
        return values[part]

    monkeypatch.setattr(C, "accuracy", acc)
    return calls


def test_eq8_uses_the_forgotten_class_test_samples_and_holds_at_exactly_one_over_c(data, monkeypatch):
    split = class_split(data, 5)
    calls = _fake_accuracy(monkeypatch, {"test": 1 / 10, "train": 1.0})
    holds, _ = C.termination(None, data, split, split.forget, split.test)
    assert holds and len(calls) == 1
    part, idx = calls[0]
    assert part == "test" and torch.equal(idx, split.test_forget)
    _fake_accuracy(monkeypatch, {"test": 1 / 10 + 1e-9, "train": 0.0})
    assert not C.termination(None, data, split, split.forget, split.test)[0]


def test_eq9_holds_at_equality_and_z_loosens_it_by_z_standard_errors(data, monkeypatch):
    split = random_split(data, 100, seed=0)
    eval_u, eval_ts = split.forget, split.test[:300]
    _fake_accuracy(monkeypatch, {"train": 0.9, "test": 0.9})
    assert C.termination(None, data, split, eval_u, eval_ts)[0]
    gap = 0.05
    _fake_accuracy(monkeypatch, {"train": 0.9 + gap, "test": 0.9})
    assert not C.termination(None, data, split, eval_u, eval_ts)[0]
    p = (0.95 * 100 + 0.9 * 300) / 400
    se = math.sqrt(p * (1 - p) * (1 / 100 + 1 / 300))
    z_edge = gap / se
    assert C.termination(None, data, split, eval_u, eval_ts, z=z_edge * 1.01)[0]
    assert not C.termination(None, data, split, eval_u, eval_ts, z=z_edge * 0.99)[0]


# --------------------------------------------------------------------------- MIA on a model whose membership is known

class Memoriser(nn.Module):
    """Knows each input by its id (pixel 0): members get a confident correct prediction, others a
    correct one of random confidence, as a model that memorised exactly `members` would."""

    def __init__(self, labels: torch.Tensor, members: torch.Tensor, num_classes: int = 10):
        super().__init__()
        self.num_classes = num_classes
        self.labels, self.is_member = labels, torch.zeros(len(labels), dtype=torch.bool)
        self.is_member[members] = True
        self.margin = torch.rand(len(labels), generator=torch.Generator().manual_seed(0)) * 3

    def forward(self, x):
        ids = x.flatten(1)[:, 0].round().long()
        margin = torch.where(self.is_member[ids], torch.full_like(self.margin[ids], 9.0), self.margin[ids])
        return nn.functional.one_hot(self.labels[ids], self.num_classes).float() * margin[:, None]


@pytest.fixture(scope="module")
def known_membership():
    n_train, n_test = 2000, 1000
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (n_train + n_test,), generator=gen)
    ids = torch.arange(n_train + n_test, dtype=torch.float32)
    x = ids[:, None, None, None].expand(-1, 1, 2, 2).clone()
    data = DeviceData("ids", x[:n_train], labels[:n_train], x[n_train:], labels[n_train:], 10,
                      tuple(map(str, range(10))))
    split = random_split(data, 100, seed=0)
    models = {"original": Memoriser(labels, torch.arange(n_train)),
              "retrain": Memoriser(labels, split.retain)}
    return data, split, models


def _within_noise(a: float, b: float, n_a: int, n_b: int, z: float = 4.0) -> bool:
    p = (a * n_a + b * n_b) / (n_a + n_b)
    return abs(a - b) <= z * math.sqrt(max(p * (1 - p), 0.01) * (1 / n_a + 1 / n_b))


def _assert_mia_properties(grid):
    for (feature, clf), res in grid.items():
        o, r = res["original"], res["retrain"]
        assert o.mia_auc > 0.9 and o.mia_test < 0.3, (feature, clf, o)  # the attack has power
        # on the Original the forget samples are members like any other
        assert _within_noise(o.mia_forget, o.mia_retain, o.n_forget, o.n_eval), (feature, clf, o)
        # after Retrain they are non-members like any other
        assert _within_noise(r.mia_forget, r.mia_test, r.n_forget, r.n_eval), (feature, clf, r)
        assert r.mia_forget < o.mia_forget - 0.5


def test_mia_forget_rate_is_the_member_rate_on_the_original_and_the_non_member_rate_after_retrain(known_membership):
    data, split, models = known_membership
    _assert_mia_properties(mia_grid(models, data, split, ("softmax_sorted", "loss"), ("svc", "logistic")))


class _EveryoneIsAMember:
    def fit(self, x, y):
        return self

    def predict(self, x):
        return np.ones(len(x))

    def decision_function(self, x):
        return np.ones(len(x))


def test_an_attack_that_calls_everything_a_member_fails_the_property_and_the_checks(known_membership, monkeypatch):
    import cu.mia

    data, split, models = known_membership
    monkeypatch.setattr(cu.mia, "make_classifier", lambda *a, **k: _EveryoneIsAMember())
    grid = mia_grid(models, data, split, ("loss",), ("svc",))
    with pytest.raises(AssertionError):
        _assert_mia_properties(grid)
    with pytest.raises(checks.ChecksFailed, match="not degenerate"):
        checks.mia_checks(grid["loss", "svc"])


# --------------------------------------------------------------------------- the unlearning loss does the forgetting

def test_contrastive_without_its_unlearning_loss_forgets_clearly_less(data, original):
    split = class_split(data, 5)
    from cu.training import accuracy

    # one pass at lr 3e-2 (3 forget batches x omega 4 steps); cross-entropy on the retained classes alone
    # also erodes the class (to 37-41 % on two CPUs), the unlearning loss takes it to 0
    acc = {lam: accuracy(U.run("contrastive", original, data, split, lr=3e-2, max_passes=1, lambda_ul=lam,
                               track_size=0)[0], data, "train", split.forget) for lam in (0.0, 3.0)}
    assert acc[3.0] < 0.1 and acc[0.0] > acc[3.0] + 0.25, acc


# --------------------------------------------------------------------------- the notebooks' checks

def _class_rows(retrain_forget=0.0, co_forget=0.0, co_retain=0.95):
    return [dict(method="original", acc_test_retain=0.97, acc_train_forget=1.0, acc_test_forget=0.98),
            dict(method="retrain", acc_test_retain=0.96, acc_train_forget=retrain_forget, acc_test_forget=0.0),
            dict(method="contrastive", acc_test_retain=co_retain, acc_train_forget=0.0, acc_test_forget=co_forget)]


def _records(stopped="condition"):
    return {"retrain": Record("retrain", "class", 1.0, 30, "fixed"),
            "contrastive": Record("contrastive", "class", 1.0, 2, stopped)}


def test_class_checks_pass_on_the_science_and_fail_on_each_break(capsys):
    rows = _class_rows()
    checks.class_checks(rows, _records(), paper_table(rows, "class"), 10)
    out = capsys.readouterr().out
    assert "all checks passed" in out and "retrain: stops by a fixed budget, 30 passes" in out
    for rows, rec, what in [(_class_rows(retrain_forget=0.01), _records(), "Retrain forgets"),
                            (_class_rows(co_forget=0.11), _records(), "Eq. 8"),
                            (_class_rows(), _records("max_passes"), "not its pass cap"),
                            (_class_rows(co_retain=0.92), _records(), "within 3 points")]:
        with pytest.raises(checks.ChecksFailed, match=what):
            checks.class_checks(rows, rec, paper_table(rows, "class"), 10)


def test_sample_checks_catch_a_retrain_that_saw_the_forget_samples():
    rows = [dict(method="original", acc_test=0.82, acc_train_forget=1.0),
            dict(method="retrain", acc_test=0.82, acc_train_forget=0.83),
            dict(method="contrastive", acc_test=0.81, acc_train_forget=0.80)]
    rec = {"retrain": Record("retrain", "sample", 1.0, 30, "fixed"),
           "contrastive": Record("contrastive", "sample", 1.0, 3, "condition")}
    checks.sample_checks(rows, rec, paper_table(rows, "sample"), 500, 10000)
    rows[1]["acc_train_forget"] = 1.0
    with pytest.raises(checks.ChecksFailed, match="Retrain treats D_tr"):
        checks.sample_checks(rows, rec, paper_table(rows, "sample"), 500, 10000)


def test_training_and_efficiency_checks():
    checks.training_checks("cifar10", 0.999, 0.83)
    with pytest.raises(checks.ChecksFailed, match="fits its training set"):
        checks.training_checks("cifar10", 0.985, 0.83)
    times = pd.DataFrame(dict(task=["class"] * 2, method=["retrain", "contrastive"], seconds=[10.0, 1.0]))
    checks.efficiency_checks(times)
    times.loc[1, "seconds"] = 11.0
    with pytest.raises(checks.ChecksFailed, match="faster than Retrain"):
        checks.efficiency_checks(times)


def test_mia_checks_warn_where_the_attack_has_no_power(capsys):
    from cu.mia import MIAResult

    r = MIAResult(0.5, 0.5, 0.45, 0.5, "softmax_sorted", "svc", 10, 10, 10, 0)
    checks.mia_checks({"original": r, "retrain": r})
    assert "WARNING  the attack has no power" in capsys.readouterr().out


# --------------------------------------------------------------------------- caches keyed by the code that made them

def _edited(monkeypatch, module: str):
    """Pretend `module`'s source was edited (a comment added)."""
    real = ck._source

    def source(m):
        text, deps = real(m)
        return (text + "\n# edited\n", deps) if m == module else (text, deps)

    monkeypatch.setattr(ck, "_source", source)


def test_code_fingerprint_follows_the_imports(monkeypatch):
    before = {m: ck.code_fingerprint(m) for m in ("cu.unlearners.contrastive", "cu.unlearners.finetune", "cu.training")}
    _edited(monkeypatch, "cu.losses")  # imported by contrastive only
    after = {m: ck.code_fingerprint(m) for m in before}
    assert after["cu.unlearners.contrastive"] != before["cu.unlearners.contrastive"]
    assert after["cu.unlearners.finetune"] == before["cu.unlearners.finetune"]
    assert after["cu.training"] == before["cu.training"]
    monkeypatch.undo()
    _edited(monkeypatch, "cu.models")  # the training loop's dependency: every model
    assert all(ck.code_fingerprint(m) != before[m] for m in before)


def test_a_changed_training_loop_trains_again(tmp_path, data, monkeypatch):
    recipe = TrainConfig(epochs=1, lr=0.05, seed=0)
    train_cached(data, "resnet18", 4, 1, recipe, cache_dir=tmp_path, progress=False)
    train_cached(data, "resnet18", 4, 1, recipe, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    _edited(monkeypatch, "cu.training")
    train_cached(data, "resnet18", 4, 1, recipe, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_run_cached_recomputes_after_a_change_of_method_code_config_split_or_original(data, original, tmp_path,
                                                                                    monkeypatch):
    calls = []
    real_run = U.run

    def counting(name, *a, **k):
        calls.append(name)
        return real_run(name, *a, **k)

    monkeypatch.setattr(U, "run", counting)
    split = class_split(data, 5)
    cfg = {"max_passes": 1, "track_size": 0, "lr": 1e-2}
    run_cached("contrastive", original, data, split, cfg, tmp_path)
    m2, rec = run_cached("contrastive", original, data, split, cfg, tmp_path)
    assert calls == ["contrastive"] and rec.method == "contrastive"
    run_cached("contrastive", original, data, split, {**cfg, "lr": 2e-2}, tmp_path)
    run_cached("contrastive", original, data, class_split(data, 3), cfg, tmp_path)
    run_cached("contrastive", m2, data, split, cfg, tmp_path)  # another Original
    assert len(calls) == 4
    _edited(monkeypatch, "cu.unlearners.contrastive")
    run_cached("contrastive", original, data, split, cfg, tmp_path)
    assert len(calls) == 5
    run_cached("contrastive", original, data, split, cfg, tmp_path)
    assert len(calls) == 5


# --------------------------------------------------------------------------- tables and overrides

def test_paper_table_layout_and_percent():
    rows = [dict(method="original", acc_test=0.8234, acc_train_forget=0.99),
            dict(method="retrain", acc_test=0.8186, acc_train_forget=0.8149)]
    t = paper_table(rows, "sample")
    assert list(t.index) == ["D_ts", "D_tr^u"] and list(t.columns) == ["original", "retrain"]
    assert t.loc["D_ts", "original"] == 82.3 and t.loc["D_tr^u", "retrain"] == 81.5


def test_upsert_csv_treats_int_float_and_string_keys_as_one(tmp_path):
    path = tmp_path / "t.csv"
    upsert_csv(path, [dict(method="m", dataset="d", model="r", width=16, seed=0, acc=0.1)])
    upsert_csv(path, [dict(method="m", dataset="d", model="r", width=16.0, seed="0", acc=0.2)])
    df = upsert_csv(path, [dict(method="m", dataset="d", model="r", width=16, seed=1, acc=0.3)])
    assert len(df) == 2 and sorted(df.acc) == [0.2, 0.3]


def test_method_overrides_give_retrain_the_recipe_and_every_method_the_seed():
    recipe = TrainConfig(epochs=7, lr=0.02, seed=3)
    o = method_overrides("retrain", {"retrain": {"epochs": 9}}, recipe, "cache", seed=3)
    assert o["lr"] == 0.02 and o["epochs"] == 9 and o["seed"] == 3 and o["cache_dir"] == "cache"
    o = method_overrides("contrastive", {"contrastive": {"lr": 0.5}, "retrain": {"epochs": 9}}, recipe, "c", seed=4)
    assert o == {"seed": 4, "lr": 0.5}
    U.make_config("contrastive", **o)  # every override is a field of the method's config


def test_report_markdown_gives_mean_and_t_interval(tmp_path):
    from scipy import stats

    from cu.report import markdown

    folder = tmp_path / "p"
    upsert_csv(folder / "sample_unlearning.csv",
               [dict(method=m, dataset="d", model="r", width=16, seed=s, acc_test=a, acc_train_forget=a, seconds=2.0)
                for m, s, a in [("original", 0, 0.80), ("original", 1, 0.90), ("retrain", 0, 0.70)]])
    text = markdown(folder)
    half = stats.t.ppf(0.975, 1) * np.std([80.0, 90.0], ddof=1) / math.sqrt(2)
    assert f"85.0 ± {half:.1f}" in text and "| 70.0 " in text
    seeds_row = next(line for line in text.splitlines() if line.startswith("| seeds (n)"))
    assert seeds_row.split("|")[2].strip() == "2" and seeds_row.split("|")[3].strip() == "1"


def test_a_variant_is_its_method_with_its_own_hyperparameters():
    from cu.experiment import method_list

    assert method_list("contrastive,contrastive:validated", "sample") == ["retrain", "contrastive",
                                                                          "contrastive:validated"]
    hp = {"contrastive": {"lr": 0.01}, "contrastive:validated": {"lambda_ce": 3.0}}
    o = method_overrides("contrastive:validated", hp, TrainConfig(), None, seed=1)
    assert o == {"seed": 1, "lr": 0.01, "lambda_ce": 3.0}
    assert method_overrides("contrastive", hp, TrainConfig(), None, seed=1) == {"seed": 1, "lr": 0.01}
    with pytest.raises(ValueError, match="unknown unlearning method 'nope'"):
        method_list(["nope:x"], "sample")


def test_report_shows_the_originals_fit_per_recipe(tmp_path):
    from cu.report import markdown

    folder = tmp_path / "p"
    upsert_csv(folder / "training.csv",
               [dict(method="original", dataset="d", model="r", width=16, seed=s, epochs=e, acc_train=a, acc_test=0.8,
                     seconds=9.0) for s, e, a in [(0, 12, 0.985), (1, 12, 0.983), (0, 20, 0.998)]])
    text = markdown(folder)
    assert "epochs 12; seeds 0, 1" in text and "epochs 20; seeds 0" in text
    assert "| training set | 98.4 ± " in text and "| training set | 99.8 " in text and "seconds" not in text
