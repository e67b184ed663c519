r"""The tuning protocol: every method, Contrastive included, tuned the same declared way.

    python -m cu.tuning configs/<profile>.yaml --task sample [--methods a b] [--trials N] [--seed 0]
                        [--results-dir results]

Protocol
  * Data. The test set is halved once (`halves`): each test part (D_ts^u and D_ts^r for class
    unlearning, D_ts for samples) is cut in two by a permutation seeded with SPLIT_SEED, whatever the
    run's seed. Trials run the method on a split whose test sets are the *validation* halves (a
    stopping rule that reads test data, such as Eq. 9, reads validation data) and are scored there.
    The *report* half is never seen while tuning; the notebooks record every method's accuracies on
    it (columns `*_report`) next to those on the whole test set, and tuned rows are to be read there.
  * Objective, which never looks at Retrain:
        class  : maximise val D_ts^r subject to val D_ts^u <= 1/C:
                 score = D_ts^r                          if D_ts^u <= 1/C
                         D_ts^r - 1 - (D_ts^u - 1/C)      otherwise
                 (every infeasible trial ranks below every feasible one; the less infeasible, the higher)
        sample : keep validation accuracy while bringing the forget accuracy to it:
                 score = D_ts - |D_tr^u - D_ts|
    where D_ts* are accuracies on the validation halves and D_tr^u on the whole forget set.
  * Search. Optuna's TPE sampler seeded with the run's seed, over the space and within the trial
    budget that `configs/tuning.yaml` declares per method and task; the method's other
    hyperparameters are its paper defaults (plus the profile's HPARAMS for that method). Tuning runs
    on one seed's Original and split (seed 0 by default); the best trial's values are applied
    unchanged to every seed (METHODS entry `name:tuned`, see `with_tuned`).
  * Records. Every trial goes to Optuna's SQLite storage `runs/tuning/<profile>.db` (a killed study
    resumes where it stopped; several processes may share it) and, as soon as it finishes, to
    `results/<profile>/tuning_trials.csv`, which is committed: a study whose storage is gone (runs/ is
    not kept) starts from the trials recorded there (`restore`); the choice goes to
    `results/<profile>/tuned_hparams.csv`. `--results-dir DIR` writes both files under DIR/<profile>/
    instead (a scratch folder, like the notebooks' RESULTS_DIR: a study run beside committed work, or
    after CI, whose trials reach results/ when the study is resumed, or run to its end, in the main
    folder; the storage is shared either way).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
import yaml

from cu.data import Split

SPLIT_SEED = 20240119  # the one permutation of the test set into validation and report halves
PROTOCOL_FILE = Path(__file__).resolve().parent.parent / "configs" / "tuning.yaml"


def halves(split: Split, seed: int = SPLIT_SEED) -> tuple[Split, Split]:
    """(validation, report): `split` with each test part cut in two halves (validation gets the extra
    sample of an odd part). The forget and retain training sets are unchanged."""
    gen = torch.Generator().manual_seed(seed)

    def cut(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        perm = idx[torch.randperm(len(idx), generator=gen)]
        k = (len(idx) + 1) // 2
        return perm[:k].sort().values, perm[k:].sort().values

    (f_val, f_rep), (r_val, r_rep) = cut(split.test_forget), cut(split.test_retain)
    meta = {**split.meta, "test_half_seed": seed}
    return (dataclasses.replace(split, test_forget=f_val, test_retain=r_val, meta={**meta, "test_half": "validation"}),
            dataclasses.replace(split, test_forget=f_rep, test_retain=r_rep, meta={**meta, "test_half": "report"}))


def score(task: str, metrics: dict, num_classes: int) -> float:
    """The protocol's objective (module docstring) from validation accuracies (fractions)."""
    if task == "class":
        chance = 1.0 / num_classes
        r, u = metrics["acc_test_retain"], metrics["acc_test_forget"]
        return r if u <= chance else r - 1.0 - (u - chance)
    if task == "sample":
        t, f = metrics["acc_test"], metrics["acc_train_forget"]
        return t - abs(f - t)
    raise ValueError(f"task={task!r}: expected 'class' or 'sample'")


def load_protocol(path: str | Path = PROTOCOL_FILE) -> dict:
    """configs/tuning.yaml: {'trials': {task: default budget}, 'spaces': {task: {method: {param: spec}}}}."""
    spec = yaml.safe_load(Path(path).read_text())
    for key in ("trials", "spaces"):
        if key not in spec:
            raise ValueError(f"{path}: missing '{key}' (see the comments of configs/tuning.yaml)")
    return spec


def space_for(protocol: dict, method: str, task: str) -> tuple[dict, int]:
    """(search space, trial budget) of `method` for `task`; a method without a space is an error."""
    from cu import unlearners

    spaces = protocol["spaces"].get(task, {})
    if method not in spaces:
        raise ValueError(f"no search space for {method} ({task}) in configs/tuning.yaml; "
                         f"methods with one: {', '.join(spaces) or 'none'}")
    entry = dict(spaces[method])
    budget = int(entry.pop("trials", protocol["trials"][task]))
    fields = {f.name for f in dataclasses.fields(unlearners.get(method).config)}
    unknown = sorted(set(entry) - fields)
    if unknown:
        raise ValueError(f"configs/tuning.yaml: {method} has no hyperparameter(s) {unknown}; valid: {sorted(fields)}")
    return entry, budget


def distributions(space: dict) -> dict:
    """Optuna's distribution of each parameter of `space`:
    {param: {log: [lo, hi]} | {float: [lo, hi]} | {int: [lo, hi]} | {choice: [...]}}."""
    import optuna.distributions as od

    out = {}
    for name, spec in space.items():
        (kind, arg), = spec.items()
        if kind in ("log", "float"):
            out[name] = od.FloatDistribution(float(arg[0]), float(arg[1]), log=kind == "log")
        elif kind == "int":
            out[name] = od.IntDistribution(int(arg[0]), int(arg[1]))
        elif kind == "choice":
            out[name] = od.CategoricalDistribution(list(arg))
        else:
            raise ValueError(f"search space of {name}: unknown kind {kind!r}; use log, float, int or choice")
    return out


def suggest(trial, space: dict) -> dict:
    """One point of `space` (see `distributions`) drawn by `trial`."""
    import optuna.distributions as od

    out = {}
    for name, d in distributions(space).items():
        if isinstance(d, od.FloatDistribution):
            out[name] = trial.suggest_float(name, d.low, d.high, log=d.log)
        elif isinstance(d, od.IntDistribution):
            out[name] = trial.suggest_int(name, d.low, d.high)
        else:
            out[name] = trial.suggest_categorical(name, list(d.choices))
    return out


def restore(study, space: dict, rows: list[dict]) -> int:
    """Add the finished trials recorded in `rows` (this study's rows of tuning_trials.csv, as `trial_rows`
    wrote them) to `study`, in their recorded order; returns how many. For a study whose SQLite storage
    is gone (runs/ is not kept: a new checkout, another machine), so that its recorded trials count
    toward the budget and inform the sampler as they would on a resume from SQLite. Each keeps its
    recorded number as the user attribute `trial`. A restored trial was scored on the Original of the
    machine that ran it (same seed and recipe; floats differ between CPUs)."""
    import optuna
    import pandas as pd

    dists = distributions(space)
    rows = sorted(rows, key=lambda r: int(r["trial"]))
    for r in rows:
        params = json.loads(r["params"])
        if set(params) != set(dists):
            raise ValueError(f"recorded trial {r['trial']} of {study.study_name} has parameters {sorted(params)}, "
                             f"the declared space {sorted(dists)}: the space changed since; remove its rows "
                             f"from tuning_trials.csv to start the study afresh")
        state = optuna.trial.TrialState[r["state"]]
        attrs = {k: v for k, v in r.items() if k not in TRIAL_ROW_FIELDS and not pd.isna(v)}
        study.add_trial(optuna.trial.create_trial(
            state=state, value=float(r["score"]) if state == optuna.trial.TrialState.COMPLETE else None,
            params=params, distributions={k: dists[k] for k in params},
            user_attrs={**attrs, "trial": int(r["trial"])}))
    return len(rows)


FINISHED = ("COMPLETE", "PRUNED", "FAIL")  # the trial states that count toward a study's budget


def finished(study) -> list:
    """The study's finished trials (those that count toward its budget), in the order they were created."""
    return [t for t in study.trials if t.state.name in FINISHED]


def tune(method: str, original, data, split: Split, space: dict, n_trials: int, seed: int = 0,
         fixed: dict | None = None, storage: str | None = None, study_name: str | None = None,
         log=print, recorded: list[dict] | None = None, on_trial=None):
    """Run (or resume) the study of `method` on the validation half of `split`; returns the Optuna study.

    Each trial runs `cu.unlearners.run(method, original, ...)` with `fixed` (seed, the profile's
    HPARAMS) updated with the trial's values, and stores the validation accuracies, the score,
    the method's seconds and how it stopped as user attributes. A trial whose method fails (e.g. a
    NaN loss) is recorded as failed and the study goes on. Only the missing trials of a resumed
    study are run. `recorded`: the study's rows of tuning_trials.csv, restored (`restore`) when the
    storage holds no finished trial of the study. `on_trial(study, trial)` is called after every
    finished trial (the command line writes its row to tuning_trials.csv there, so that a study stopped
    with its storage lost keeps every trial it finished)."""
    import optuna

    from cu import unlearners
    from cu.experiment import evaluate

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    val, _ = halves(split)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True)
    done = finished(study)
    if not done and recorded:
        restore(study, space, recorded)
        done = finished(study)
        log(f"{method} ({split.task}): {len(done)} recorded trials restored from tuning_trials.csv")
    todo = max(0, n_trials - len(done))
    # seeded TPE (its first 10 trials are random draws); a resumed study reseeds past the trials it has,
    # running ones included, so that it does not draw its first points again, nor the points of another
    # process that shares the study and started with the same trials finished
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    if todo == 0:
        log(f"{method} ({split.task}): {len(done)} trials already in the study, none to run")
        return study

    def objective(trial):
        params = suggest(trial, space)
        model, rec = unlearners.run(method, original, data, val, **{**(fixed or {}), **params})
        m = evaluate(model, data, val)
        s = score(split.task, m, split.num_classes)
        for k, v in {**m, "seconds": rec.seconds, "passes": rec.passes, "stopped": rec.stopped}.items():
            trial.set_user_attr(k, v)
        log(f"{method} trial {trial.number}: score {s:.4f} "
            + " ".join(f"{k}={v:.4g}" for k, v in params.items()) + f" ({rec.seconds:.1f} s, {rec.stopped})")
        return s

    # several processes may share the study: each stops once the trials finished by all of them reach the
    # budget (at most one trial per other process beyond it, those that were running then)
    enough = optuna.study.MaxTrialsCallback(n_trials, states=tuple(optuna.trial.TrialState[s] for s in FINISHED))
    study.optimize(objective, n_trials=todo, catch=(FloatingPointError, RuntimeError),
                   callbacks=([on_trial] if on_trial else []) + [enough])
    return study


TRIAL_ROW_FIELDS = ("method", "dataset", "model", "width", "seed", "task", "trial", "state", "params", "score")
TRIAL_KEY = ["method", "dataset", "model", "width", "seed", "task", "trial"]


def trial_rows(study, method: str, ident: dict, task: str) -> list[dict]:
    """One tidy row per finished trial (its values as JSON, validation accuracies, score, seconds); a
    restored trial keeps the number it was recorded under, and the trials run after it are numbered past
    the largest recorded one (recorded numbers may have gaps, where a killed trial was never finished)."""
    restored = [t.user_attrs["trial"] for t in study.trials if "trial" in t.user_attrs]
    shift = max(restored) + 1 - len(restored) if restored else 0
    rows = []
    for t in finished(study):
        attrs = {k: v for k, v in t.user_attrs.items() if k != "trial"}
        rows.append({"method": method, **ident, "task": task, "trial": t.user_attrs.get("trial", t.number + shift),
                     "state": t.state.name, "params": json.dumps(t.params, sort_keys=True), "score": t.value,
                     **attrs})
    return rows


def recorded_trials(path: str | Path, method: str, ident: dict, task: str) -> list[dict]:
    """The rows of tuning_trials.csv at `path` that belong to one study (method, ident, task)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        return []
    df = pd.read_csv(path)
    sel = (df.method == method) & (df.task == task)
    for k, v in ident.items():
        sel &= df[k].astype(str) == str(v)
    return df[sel].to_dict("records")


def best_params(study) -> dict:
    """The best completed trial's values; an error when no trial completed."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {study.study_name}: no trial completed; see tuning_trials.csv for why")
    return dict(max(complete, key=lambda t: t.value).params)


def with_tuned(hparams: dict, methods, path: str | Path, ident: dict, task: str) -> dict:
    """HPARAMS with HPARAMS['name:tuned'] filled from `tuned_hparams.csv` for every 'name:tuned' in
    `methods` (the values chosen on the tuning seed; `ident` gives dataset, model and width)."""
    import pandas as pd

    from cu.experiment import as_dict, base_name

    out = dict(as_dict(hparams, "HPARAMS"))
    wanted = [m for m in methods if str(m).endswith(":tuned") and m not in out]
    if not wanted:
        return out
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: tune first, e.g. python -m cu.tuning "
                                f"configs/<profile>.yaml --task {task} --methods {' '.join(base_name(m) for m in wanted)}")
    df = pd.read_csv(path)
    for m in wanted:
        sel = df[(df.method == base_name(m)) & (df.task == task) & (df.dataset == ident["dataset"])
                 & (df.model == ident["model"]) & (df.width.astype(int) == int(ident["width"]))]
        if sel.empty:
            raise ValueError(f"{path} has no tuned setting of {base_name(m)} for {task} unlearning on "
                             f"{ident['dataset']}/{ident['model']}/w{ident['width']}: run python -m cu.tuning "
                             f"configs/<profile>.yaml --task {task} --methods {base_name(m)}")
        out[m] = json.loads(sel.iloc[-1]["hparams"])
    return out


REFERENCES = ("original", "retrain")  # the models every method is judged against, not methods with a setting


def setting_of(name: str) -> str:
    """The `setting` column of a row: 'reference' for the Original and Retrain (also a labelled one such as
    'retrain (held out)'), else 'paper' for a registered name and the variant's label for 'name:label'."""
    name = str(name)
    if name.split(":", 1)[0].split(" ", 1)[0] in REFERENCES:
        return "reference"
    return name.split(":", 1)[1] if ":" in name else "paper"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", help="a profile file, e.g. configs/default.yaml")
    ap.add_argument("--task", choices=("class", "sample"), required=True)
    ap.add_argument("--methods", nargs="*", default=None, help="default: every method with a space for the task")
    ap.add_argument("--trials", type=int, default=None, help="override the budget of configs/tuning.yaml")
    ap.add_argument("--seed", type=int, default=0, help="the seed whose Original and split are tuned on")
    ap.add_argument("--protocol", default=str(PROTOCOL_FILE))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--results-dir", default="results",
                    help="where <profile>/tuning_trials.csv and tuned_hparams.csv are written (default: results)")
    args = ap.parse_args()

    from cu.data import make_split
    from cu.experiment import as_dict, prepare
    from cu.results import upsert_csv
    from cu.training import TrainConfig

    cfg = yaml.safe_load(Path(args.profile).read_text())
    profile = cfg.get("PROFILE", Path(args.profile).stem)
    nb_dir = Path("notebooks")  # the profiles' relative paths (DATA_ROOT, ...) are relative to notebooks/
    data_root = cfg.get("DATA_ROOT")
    data_root = str(nb_dir / data_root) if data_root and not Path(data_root).is_absolute() else data_root
    recipe = TrainConfig(epochs=cfg.get("EPOCHS", 30), lr=cfg.get("LR", 0.05), momentum=cfg.get("MOMENTUM", 0.9),
                         weight_decay=cfg.get("WEIGHT_DECAY", 5e-4), batch_size=cfg.get("BATCH_SIZE", 128),
                         seed=args.seed)
    dataset, model_name, width = cfg.get("DATASET", "digits"), cfg.get("MODEL", "resnet18"), cfg.get("WIDTH", 16)
    ds, data, original, _ = prepare(dataset, data_root, model_name, width, recipe, args.device, "checkpoints",
                                    progress=bool(cfg.get("PROGRESS", False)))
    split = make_split(data, args.task, forget_class=cfg.get("FORGET_CLASS", 5),
                       n_forget=cfg.get("N_FORGET", 100), seed=args.seed)
    protocol = load_protocol(args.protocol)
    methods = args.methods or list(protocol["spaces"].get(args.task, {}))
    hparams = as_dict(cfg.get("HPARAMS", {}), "HPARAMS")
    storage_file = Path("runs") / "tuning" / f"{profile}.db"
    storage_file.parent.mkdir(parents=True, exist_ok=True)
    ident = dict(dataset=dataset, model=model_name, width=width, seed=args.seed)
    stamp = lambda msg: print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)  # noqa: E731
    out = Path(args.results_dir) / profile
    trials_csv = out / "tuning_trials.csv"
    stamp(f"tuning {', '.join(methods)} for {args.task} unlearning on {profile} (seed {args.seed}): {split.describe()}")
    for method in methods:
        space, budget = space_for(protocol, method, args.task)
        n = args.trials or budget
        fixed = {"seed": args.seed, **(hparams.get(method) or {})}
        name = f"{profile}-{dataset}-{model_name}-w{width}-s{args.seed}-{args.task}-{method}"

        def record(study, trial, method=method):  # the study's rows, as soon as each trial finishes
            upsert_csv(trials_csv, trial_rows(study, method, ident, args.task), key=TRIAL_KEY)

        study = tune(method, original, data, split, space, n, args.seed, fixed, f"sqlite:///{storage_file}", name,
                     log=stamp, recorded=recorded_trials(trials_csv, method, ident, args.task), on_trial=record)
        record(study, None)  # every finished trial, those of a study resumed with none left to run included
        best = best_params(study)
        done = finished(study)
        upsert_csv(out / "tuned_hparams.csv",
                   [{"method": method, **ident, "task": args.task, "n_trials": len(done),
                     "score": study.best_value, "hparams": json.dumps({**best}, sort_keys=True),
                     "space": json.dumps(space, sort_keys=True)}],
                   key=["method", "dataset", "model", "width", "seed", "task"])
        stamp(f"{method}: best score {study.best_value:.4f} with {best} ({len(done)} trials)")


if __name__ == "__main__":
    main()
