"""Aggregate tidy results into the paper's tables: mean and 95 % confidence interval over seeds.

    python -m cu.report results/default [--readme README.md]
    python -m cu.report --scorecard [--readme README.md]     # the paper's claims against every profile
    python -m cu.report --regime [--readme README.md]        # sample unlearning's gap per training regime
    python -m cu.report --forgetting [--readme README.md]    # notebook 06's reading of every forgetting.csv

reads `training.csv`, `class_unlearning.csv`, `sample_unlearning.csv`, `mia.csv` and `forgetting.csv`
(whichever exist) under a profile's folder, writes `tables.md` there (the Originals' training and test
accuracy, then Tables 1/2, 3/7, 4/5 and 6 layouts, then notebook 06's scores: evaluation rows x methods, each
cell the mean over seeds with the half-width of a t-based 95 % confidence interval when there are
several seeds; the last row counts each method's seeds), and with --readme replaces the README's
section between the results markers.
"""
from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

import pandas as pd

from cu.experiment import RECORDED_EXTRAS
from cu.runtime import atomic_write

TABLES = {
    "training.csv": ("Originals (notebook 01): does the model fit its training set, as the paper's do? accuracy %",
                     {"acc_train": "training set", "acc_test": "test set"}, 100),
    "class_unlearning.csv": ("Class unlearning (Tables 1/2 layout), accuracy %",
                             {"acc_test_retain": "D_ts^r", "acc_train_forget": "D_tr^u", "acc_test_forget": "D_ts^u"}, 100),
    "sample_unlearning.csv": ("Sample unlearning (Tables 4/5 layout), accuracy %",
                              {"acc_test": "D_ts", "acc_train_forget": "D_tr^u"}, 100),
    "mia.csv": ("Membership inference (Table 6 layout), member-prediction rate %",
                {"mia_forget": "D_tr^u", "mia_gap_retrain": "D_tr^u gap to Retrain (pt)",
                 "mia_retain": "D_tr^r (held-out members)", "mia_test": "D_ts (held-out non-members)",
                 "mia_auc": "AUC (%)"}, 1),  # percent already
    "forgetting.csv": ("Forgetting quality (notebook 06): the NeurIPS-2023 challenge's scores and U-LiRA over many "
                       "models; scores and accuracies as fractions",
                       {"forget_score": "forget score (1 = perfect)", "final_score": "final score",
                        "eps_median": "median per-example epsilon", "ulira_auc": "U-LiRA AUC (0.5 = ideal)",
                        "ulira_tpr_at_1fpr": "U-LiRA TPR at 1 % FPR", "acc_retain": "D_tr^r accuracy",
                        "acc_test": "D_ts accuracy"}, 1, 3),
}
"""file -> (heading, {column: row label}, scale, [decimals, default 1]); one table per (dataset, model, width)
and the file's own keys (attack for mia.csv, epochs for training.csv, task and n_models for forgetting.csv)."""


NO_POWER_AUC = 55.0
"""The paper's attack has no power where the Original's AUC (%) is at most this: its member rates say nothing."""


def t95(n: int) -> float:
    """Two-sided 95 % quantile of Student's t with n-1 degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else float("nan")


def mean_ci(values: pd.Series, scale: float, decimals: int = 1) -> str:
    v = values.dropna().astype(float) * scale
    if len(v) == 0:
        return "–"
    if len(v) == 1:
        return f"{v.iloc[0]:.{decimals}f}"
    half = t95(len(v)) * v.std(ddof=1) / math.sqrt(len(v))
    return f"{v.mean():.{decimals}f} ± {half:.{decimals}f}"


def method_order(methods) -> list[str]:
    """The figures' fixed order (`cu.plots.METHOD_STYLE`): Original, Retrain, Contrastive, the paper's baselines,
    the newer methods; each variant ('name:tuned') right after its method."""
    from cu.plots import method_order as order

    return order(methods)


def aggregate(df: pd.DataFrame, metrics: dict, scale: float, extra_keys=(), decimals: int = 1) -> dict[str, pd.DataFrame]:
    """One table per (dataset, model, width, *extra_keys): metric rows x method columns, each cell
    `mean_ci` at `decimals`."""
    out = {}
    keys = ["dataset", "model", "width", *extra_keys]
    for group, sub in df.groupby(keys):
        group = group if isinstance(group, tuple) else (group,)
        runs = dict(tuple(sub.groupby("method")))
        seeds = sorted(sub["seed"].unique())

        def column(m: str) -> dict:
            cells = {label: mean_ci(runs[m][col], scale, decimals) for col, label in metrics.items()}
            if "seconds" in sub.columns:
                cells["seconds"] = mean_ci(runs[m]["seconds"], 1, 2) if m != "original" else "–"
            cells["seeds (n)"] = str(runs[m]["seed"].nunique())
            return cells

        table = pd.DataFrame({m: column(m) for m in method_order(runs)})
        title = ", ".join(f"{k} {v}" for k, v in zip(keys, group)) + f"; seeds {', '.join(map(str, seeds))}"
        out[title] = table
    return out


def markdown(folder: str | Path, attack: tuple[str, str] | None = None) -> str:
    """All tables of a profile folder; `attack` = (feature, classifier) keeps one MIA table (the README's)."""
    folder = Path(folder)
    parts = [f"Profile `{folder.name}`: mean over seeds, ± the half-width of a 95 % t-interval where there are "
             f"several seeds. Regenerate with "
             + ("`make all`, or " if folder.name == "default" else "a sweep over seeds (`python -m cu.sweep`), then ")
             + f"`python -m cu.report {folder} --readme README.md`."]
    for name, (heading, metrics, scale, *decimals) in TABLES.items():
        decimals = decimals[0] if decimals else 1
        path = folder / name
        if not path.exists():
            continue
        df = pd.read_csv(path)
        metrics = {**metrics, **{c: f"{label} (%)" for c, label in RECORDED_EXTRAS.items()
                                 if name.endswith("unlearning.csv") and c in df.columns and df[c].notna().any()}}
        if name == "mia.csv" and attack is not None and {"feature", "classifier"} <= set(df.columns):
            df = df[(df.feature == attack[0]) & (df.classifier == attack[1])]
        extra = tuple(k for k in ("feature", "classifier") if k in df.columns)  # one table per attack
        if name == "mia.csv":
            df = with_retrain_gap(df, extra)
        if name == "training.csv":  # one table per recipe; its seconds are the training's, shown in notebook 01
            df, extra = df.drop(columns="seconds", errors="ignore"), ("epochs",)
        if name == "forgetting.csv":  # one table per task and number of models
            extra = ("task", "n_models")
        for title, table in aggregate(df, metrics, scale, extra, decimals).items():
            parts.append(f"**{heading}** ({title})\n\n{table.to_markdown(disable_numparse=True)}")
            if name == "mia.csv" and "original" in table.columns and _mean(table.loc["AUC (%)", "original"]) <= NO_POWER_AUC:
                parts.append(f"The attack has **no power** here (the Original's AUC <= {NO_POWER_AUC:g} %): these member "
                             "rates say nothing about forgetting.")
        report = {f"{c}_report": f"{label} (report half)" for c, label in metrics.items() if f"{c}_report" in df.columns}
        if report and df[list(report)].notna().any().any():  # where tuned settings are to be read (cu.tuning)
            metrics_r = {**report, **{c: label for c, label in metrics.items() if c == "acc_train_forget"}}
            rows = df.dropna(subset=list(report))
            for title, table in aggregate(rows, metrics_r, scale, extra).items():
                parts.append(f"**{heading}, test accuracies on the report half of the test set, which tuning "
                             f"never sees** ({title})\n\n{table.to_markdown(disable_numparse=True)}")
    tuned = tuned_settings(folder)
    if tuned:
        parts.append(tuned)
    return "\n\n".join(parts) + "\n"


TUNED = "tuned_hparams.csv"
"""cu.tuning's choices: one row per (method, dataset, model, width, tuning seed, task)."""
TUNED_COLUMNS = ("method", "dataset", "model", "width", "seed", "task", "n_trials", "score", "hparams")


def _compact(value) -> str:
    """A tuned value as the table shows it: floats to 3 significant digits, the rest as written."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def tuned_settings(folder: str | Path) -> str:
    """The tuning protocol's choices of a profile folder (`tuned_hparams.csv`, written by cu.tuning) as one
    markdown table per (dataset, model, width): the method and task, the seed whose validation half it was tuned
    on, the trials run, the best validation score (cu.tuning.score) and the chosen values; '' without the file."""
    import json

    path = Path(folder) / TUNED
    if not path.exists():
        return ""
    df = pd.read_csv(path)
    missing = [c for c in TUNED_COLUMNS if c not in df.columns]
    if missing:
        return f"`{path}` lacks the columns that cu.tuning writes ({', '.join(missing)}): its settings are not shown."
    parts = []
    for (dataset, model, width), g in df.groupby(["dataset", "model", "width"], sort=False):
        g = g.assign(order=g.method.map({m: i for i, m in enumerate(method_order(g.method))})).sort_values(["task", "order"])
        rows = [{"task": r.task, "method": r.method, "tuned on seed": int(r.seed), "trials": int(r.n_trials),
                 "best validation score": f"{r.score:.3f}",
                 "chosen": ", ".join(f"{k} {_compact(v)}" for k, v in sorted(json.loads(r.hparams).items()))}
                for r in g.itertuples()]
        parts.append(f"**Tuned settings (cu.tuning: chosen on a validation half of the test set; `{TUNED}`)** "
                     f"(dataset {dataset}, model {model}, width {width})\n\n"
                     + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True))
        if ((g.task == "class") & (g.score < 0)).any():
            parts.append("A class score below 0: no trial brought validation D_ts^u down to 1/C; the least "
                         "infeasible trial was chosen (cu.tuning.score).")
    return "\n\n".join(parts)


def with_retrain_gap(df: pd.DataFrame, attack_keys=()) -> pd.DataFrame:
    """mia.csv with `mia_gap_retrain`: each row's D_tr^u rate minus Retrain's for the same seed and attack."""
    keys = ["dataset", "model", "width", "seed", *attack_keys]
    ref = df[df.method == "retrain"].set_index(keys)["mia_forget"].rename("retrain_forget")
    out = df.join(ref, on=keys)
    out["mia_gap_retrain"] = out["mia_forget"] - out["retrain_forget"]
    return out.drop(columns="retrain_forget")


def _mean(cell: str) -> float:
    """The mean of a 'mean ± half' table cell."""
    try:
        return float(str(cell).split(" ")[0])
    except ValueError:
        return float("nan")


# --------------------------------------------------------------------------- the scorecard

SCORECARD_PROFILES = ["cifar10-paper", "cifar10-cpu", "cifar10-cpu-12ep", "default"]  # CIFAR-10 first
RULES = """Verdicts (CIFAR-10 profiles only; digits is another data set, its values are shown for reference):
**zero** claims are *reproduced* when our mean is <= 1 %, *partly* when <= 5 %; **gap** claims (points against
Retrain, or a level) when our mean is within 2 pt of the paper's (*partly*: 5 pt), marked *wide CI* where our
95 % half-width exceeds 5 pt (the seeds disagree too much for the verdict to settle it); **ratio** claims
(time as a fraction of Retrain's; Figure 2's forget batches to 0) when ours is within a factor 2 of the
paper's (*partly*: a factor 5).
*not run here*: the profile has no such rows. Ours: mean ± 95 % t-interval over seeds (n), the model the paper
calls RN18 (ResNet-18; width 16 on the CPU profiles, 64 on `cifar10-paper`), each method at its paper defaults."""


@functools.lru_cache(maxsize=64)
def _csv_version(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return pd.read_csv(path)


def read_results(path: Path) -> pd.DataFrame:
    """A results CSV as a DataFrame, parsed once per version of the file (keyed by its path, modification time
    and size, so a file rewritten by a sweep is read again): the scorecard asks for the same few files once per
    claim and cell. A copy, so callers may change it."""
    st = Path(path).stat()
    return _csv_version(str(path), st.st_mtime_ns, st.st_size).copy()


def seed_values(folder: Path, file: str, task: str, method: str, metric: str, kind: str = "value",
                unit: str = "%") -> pd.Series | None:
    """Per-seed values of one method's `metric` in `folder/file` (ResNet-18 rows; mia.csv: the paper's attack),
    in `unit`: the value itself (`kind` 'value'), minus Retrain's on the same seed ('gap_to_retrain') or divided
    by Contrastive's at its paper settings on the same seed ('ratio_to_contrastive'). None without rows."""
    if not isinstance(file, str) or not (folder / file).exists():
        return None
    df = read_results(folder / file)
    df = df[df.model == "resnet18"]
    if "task" in df.columns:
        df = df[df.task == task]
    if file == "mia.csv" and "feature" in df.columns:
        df = df[(df.feature == "softmax_sorted") & (df.classifier == "svc")]
    # percentages and their differences are stored as the table of that file stores them (TABLES' scale);
    # other units (seconds, ratios) are stored as they are
    scale = TABLES[file][2] if unit in ("%", "pt") and file in TABLES else 1.0
    if metric not in df.columns:  # a file written before the column existed
        return None

    def of(m: str) -> pd.Series:
        rows = df[df.method == m]
        return rows.groupby("seed")[metric].mean().astype(float).dropna() * scale

    mine = of(method)
    if kind == "gap_to_retrain":
        mine = (mine - of("retrain")).dropna()
    elif kind == "ratio_to_contrastive":
        mine = (mine / of("contrastive")).dropna()
    elif kind != "value":
        raise ValueError(f"unknown kind {kind!r}; use value, gap_to_retrain or ratio_to_contrastive")
    return mine if len(mine) else None


def claim_values(folder: Path, claim) -> pd.Series | None:
    """Our per-seed values of one claim (`results/paper_claims.csv` row) in a profile folder, in the claim's
    unit; None when the folder has no rows for it."""
    return seed_values(folder, claim.file, claim.task, claim.method, claim.metric, claim.kind, claim.unit)


def verdict(rule: str, paper: float, values: pd.Series | None) -> str:
    """The stated rule (RULES) applied to our values."""
    if values is None or rule == "none":
        return "not run here"
    mean = float(values.mean())
    half = t95(len(values)) * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    if rule == "zero":
        return "reproduced" if mean <= 1 else "partly" if mean <= 5 else "not reproduced"
    if rule == "gap":
        d = abs(mean - paper)
        out = "reproduced" if d <= 2 else "partly" if d <= 5 else "not reproduced"
        return out + (" (wide CI)" if half > 5 else "")
    if rule == "ratio":
        q = mean / paper if paper else float("inf")
        return "reproduced" if 0.5 <= q <= 2 else "partly" if 0.2 <= q <= 5 else "not reproduced"
    raise ValueError(f"paper_claims.csv: unknown rule {rule!r}; use zero, gap, ratio or none")


def scorecard(results_root: str | Path = "results", profiles: list[str] | None = None) -> str:
    """The paper's claims (results/paper_claims.csv) against ours per profile, with a verdict by RULES."""
    root = Path(results_root)
    claims = pd.read_csv(root / "paper_claims.csv")
    profiles = [p for p in (profiles or SCORECARD_PROFILES) if (root / p).exists()]
    rows = []
    for c in claims.itertuples(index=False):
        row = {"claim": c.claim, "paper (source)": f"{c.paper_value:g} {c.unit} ({c.source})"}
        for p in profiles:
            v = claim_values(root / p, c)
            decimals = 3 if c.unit == "ratio" else 1
            cell = "–" if v is None else f"{mean_ci(v, 1, decimals)} ({len(v)})"
            if p != "default":
                cell += f": {verdict(c.rule, c.paper_value, v)}" if v is not None else ": not run here"
            row[f"`{p}`"] = cell
        rows.append(row)
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    beyond = [b for b in (beyond_paper(root / p) for p in profiles if p != "default") if b]
    return (f"**Scorecard: the paper's claims (CIFAR-10, ResNet-18) against ours.** Generated by "
            f"`python -m cu.report --scorecard --readme README.md` from `results/paper_claims.csv` (the paper's "
            f"numbers, entered once with their table and row) and `results/<profile>/*.csv`.\n\n{table}\n\n{RULES}\n"
            + "".join(f"\n{b}" for b in beyond))


BEYOND_PAPER = ("random_label", "salun", "l1_sparse", "ssd", "bad_teacher")
"""The methods that today's unlearning papers compare with and the paper does not (issue #21; README, Beyond the paper)."""
BEYOND_ROWS = (  # (file, task, metric, kind, unit, row label)
    ("class_unlearning.csv", "class", "acc_test_retain", "gap_to_retrain", "pt", "class: D_ts^r minus Retrain's (pt)"),
    ("class_unlearning.csv", "class", "acc_train_forget", "value", "%", "class: D_tr^u (%; Retrain 0)"),
    ("class_unlearning.csv", "class", "acc_test_forget", "value", "%", "class: D_ts^u (%; Retrain 0)"),
    ("class_unlearning.csv", "class", "seconds", "ratio_to_contrastive", "ratio", "class: seconds / Contrastive's"),
    ("sample_unlearning.csv", "sample", "acc_test", "gap_to_retrain", "pt", "sample: D_ts minus Retrain's (pt)"),
    ("sample_unlearning.csv", "sample", "acc_train_forget", "gap_to_retrain", "pt", "sample: D_tr^u minus Retrain's (pt)"),
    ("sample_unlearning.csv", "sample", "seconds", "ratio_to_contrastive", "ratio", "sample: seconds / Contrastive's"),
    ("mia.csv", "sample", "mia_forget", "gap_to_retrain", "pt", "sample: MIA member rate on D_tr^u minus Retrain's (pt)"),
)


def beyond_paper(folder: str | Path) -> str:
    """The scorecard's "beyond the paper" columns for one profile: Contrastive (paper settings, and each of its
    variants present) beside every BEYOND_PAPER method and its variants ('name:tuned'), each row a number of
    BEYOND_ROWS paired by seed (mean ± 95 % t-interval, seeds in brackets); '' when the profile has none of them."""
    folder = Path(folder)
    found = set()
    for file in {r[0] for r in BEYOND_ROWS}:
        if (folder / file).exists():
            found |= set(read_results(folder / file).method.astype(str))
    newer = [m for m in found if m.partition(":")[0] in BEYOND_PAPER]
    if not newer:
        return ""
    columns = method_order([m for m in found if m.partition(":")[0] == "contrastive"] + newer)
    table = {}
    for m in columns:
        cells = {}
        for file, task, metric, kind, unit, label in BEYOND_ROWS:
            v = seed_values(folder, file, task, m, metric, kind, unit)
            cells[label] = "–" if v is None else f"{mean_ci(v, 1, 2 if unit == 'ratio' else 1)} ({len(v)})"
        table[m] = cells
    return (f"**Beyond the paper (`{folder.name}`): the newer methods beside Contrastive**, each number against the "
            f"same seed's Retrain (or Contrastive's seconds at its paper settings), mean ± 95 % t-interval over seeds "
            f"(n). Seconds come from runs beside other jobs: ratios within a seed, not clean timings.\n\n"
            f"{pd.DataFrame(table).to_markdown(disable_numparse=True)}\n")


# --------------------------------------------------------------------------- the training regime

REGIME_PROFILES = ["cifar10-cpu-12ep", "cifar10-cpu", "cifar10-paper"]


def _epochs(root: Path, profile: str, df: pd.DataFrame | None) -> str:
    """The Originals' epochs: training.csv's when the profile has one, else its config's EPOCHS."""
    if df is not None and "epochs" in df.columns:
        return ", ".join(str(e) for e in sorted(df.epochs.unique()))
    import yaml

    cfg = root.parent / "configs" / f"{profile}.yaml"
    return str(yaml.safe_load(cfg.read_text()).get("EPOCHS", "–")) if cfg.exists() else "–"


def regime(results_root: str | Path = "results", profiles: list[str] | None = None,
           methods=("contrastive", "contrastive:validated")) -> str:
    """Sample unlearning against the training regime: per profile (width, epochs, the Originals' fit of the
    training set and of D_tr^u) and method, its test and forget accuracy minus Retrain's, paired by seed (mean ±
    95 % t-interval over the seeds that have both), beside Retrain's own. Issue #18 item 3: which of width,
    training length or fit of the training set makes the sample-unlearning gap."""
    root = Path(results_root)
    rows, datasets = [], set()
    for p in profiles or REGIME_PROFILES:
        path = root / p / "sample_unlearning.csv"
        if not path.exists():
            continue
        df = pd.read_csv(path)
        train = pd.read_csv(root / p / "training.csv") if (root / p / "training.csv").exists() else None
        for (dataset, model, width), sub in df.groupby(["dataset", "model", "width"]):
            tr = None if train is None else \
                train[(train.dataset == dataset) & (train.model == model) & (train.width == width)]
            ref = sub[sub.method == "retrain"].set_index("seed")
            for method in methods:
                mine = sub[sub.method == method].set_index("seed")
                seeds = sorted(set(ref.index) & set(mine.index))
                if not seeds:
                    continue
                datasets.add(dataset)
                fit = tr[tr.seed.isin(seeds)] if tr is not None else pd.DataFrame()
                orig = sub[(sub.method == "original") & sub.seed.isin(seeds)]
                gap = {c: mine.loc[seeds, c] - ref.loc[seeds, c] for c in ("acc_test", "acc_train_forget")}
                rows.append({"profile": f"`{p}`", "model": f"{model} w{width}", "epochs": _epochs(root, p, tr),
                             "Original train %": mean_ci(fit.acc_train, 100) if len(fit) else "–",
                             "Original D_tr^u %": mean_ci(orig.acc_train_forget, 100) if len(orig) else "–",
                             "Retrain D_ts %": mean_ci(ref.loc[seeds, "acc_test"], 100),
                             "Retrain D_tr^u %": mean_ci(ref.loc[seeds, "acc_train_forget"], 100),
                             "method": method,
                             "D_ts - Retrain (pt)": mean_ci(gap["acc_test"], 100),
                             "D_tr^u - Retrain (pt)": mean_ci(gap["acc_train_forget"], 100),
                             "seeds": ", ".join(map(str, seeds))})
    if not rows:
        return f"No profile has sample-unlearning rows with Retrain and any of {', '.join(methods)} yet.\n"
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    return (f"**Sample unlearning against the training regime** ({', '.join(sorted(datasets))}; generated by "
            f"`python -m cu.report --regime --readme README.md` from `results/<profile>/sample_unlearning.csv` and "
            f"`training.csv`; each method's gaps to Retrain paired by seed, mean ± 95 % t-interval over the seeds "
            f"listed; `–`: the profile did not record the Originals' accuracy on the whole training set).\n\n"
            f"{table}\n")


# --------------------------------------------------------------------------- notebook 06's reading

def forgetting_reading(results_root: str | Path = "results", profiles: list[str] | None = None) -> str:
    """Notebook 06's reading (`cu.findings.forgetting_findings`: ceiling and floor, forget-score, final-score and
    U-LiRA rankings, agreement with notebook 04's paper attack on the same seed) for every (profile, dataset,
    model, width, seed, task, number of models) in `results/<profile>/forgetting.csv`, the largest number of
    models first: the README's text about these scores is generated from the results, never typed."""
    from cu.findings import REFERENCES, forgetting_findings
    from cu.forgetting import compare_with_mia

    root = Path(results_root)
    profiles = profiles or sorted(p.name for p in root.iterdir() if (p / "forgetting.csv").exists())
    keys = ["dataset", "model", "width", "seed", "task", "n_models"]
    parts = [f"Generated by `python -m cu.report --forgetting --readme README.md` from "
             f"`results/<profile>/forgetting.csv` and, for the MIA's ranking, `mia.csv` (the paper's attack)."]
    for profile in profiles:
        path = root / profile / "forgetting.csv"
        if not path.exists():
            continue
        df = pd.read_csv(path)
        mia_csv = root / profile / "mia.csv"
        mia = pd.read_csv(mia_csv) if mia_csv.exists() else None
        groups = df.groupby(keys, sort=False)
        for key in sorted(groups.groups, key=lambda k: (k[0], k[1], k[2], k[3], k[4], -k[5])):
            ident = dict(zip(keys, key))
            rows = groups.get_group(key).set_index("method")
            scores = {m: r.to_dict() for m, r in rows.iterrows()}
            methods = [m for m in rows.index if m not in REFERENCES]
            comparison = compare_with_mia(rows, mia_csv, ident) if methods else None
            power = _mia_power(mia, ident) if comparison is not None else ""
            parts.append(f"**`{profile}`: {ident['dataset']} {ident['model']} w{ident['width']}, seed {ident['seed']}, "
                         f"{ident['task']} unlearning, {ident['n_models']} models per method** "
                         f"({len(methods)} methods)\n\n"
                         + (forgetting_findings(scores, int(ident["n_models"]), comparison) + power).rstrip("\n"))
    if len(parts) == 1:
        parts.append("No profile has `forgetting.csv` yet: run notebook 06 (`make all`, or a forgetting sweep).")
    return "\n\n".join(parts) + "\n"


def _mia_power(mia: pd.DataFrame, ident: dict) -> str:
    """A bullet saying that the paper's attack (softmax_sorted, svc) has no power for `ident`'s seed, if so
    (`mia`: the profile's mia.csv, read once per profile)."""
    sel = mia[(mia.method == "original") & (mia.dataset == ident["dataset"]) & (mia.model == ident["model"])
              & (mia.width == ident["width"]) & (mia.seed == ident["seed"]) & (mia.feature == "softmax_sorted")
              & (mia.classifier == "svc")]
    if sel.empty or float(sel.mia_auc.iloc[0]) > NO_POWER_AUC:
        return ""
    return (f"- The paper's attack has **no power** here (the Original's AUC {float(sel.mia_auc.iloc[0]):.1f} % <= "
            f"{NO_POWER_AUC:g} %): its ranking is not evidence of forgetting.\n")


def summary_figures(folder: str | Path, figures_root: str | Path = "figures") -> list[tuple[str, str]]:
    """`cu.plots.utility_vs_forgetting` for each task with results in `folder` (mean over seeds, each method at
    its own setting), written to figures/<profile>/summary_<task>.png (+ .pdf); returns (path, caption) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cu import plots

    folder = Path(folder)
    out = []
    for task, name in (("class", "class_unlearning.csv"), ("sample", "sample_unlearning.csv")):
        if not (folder / name).exists():
            continue
        df = pd.read_csv(folder / name)
        for (dataset, model, width), sub in df.groupby(["dataset", "model", "width"]):
            if "retrain" not in set(sub.method):
                continue
            what = "class" if task == "class" else "sample"
            fig = plots.utility_vs_forgetting(sub, task, f"{what.capitalize()} unlearning, {dataset} {model} "
                                              f"width {width} ({sub.seed.nunique()} seeds)")
            tag = f"summary_{task}_{dataset}_{model}_w{width}"
            plots.save_figure(fig, Path(figures_root) / folder.name, tag)
            plt.close(fig)
            out.append((f"{figures_root}/{folder.name}/{tag}.png",
                        f"{what.capitalize()} unlearning on {dataset}: utility against distance to Retrain's forget "
                        f"accuracy, marker area = seconds (up and left is better)"))
    return out


def update_readme(readme: str | Path, text: str, profile: str = "default", marker: str | None = None) -> None:
    """Replace the README's section between `<!-- MARKER:start -->` and `<!-- MARKER:end -->`, MARKER
    `results:PROFILE` unless given."""
    marker = marker or f"results:{profile}"
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    readme = Path(readme)
    body = readme.read_text()
    if start not in body or end not in body:
        raise ValueError(f"{readme} lacks the markers {start} ... {end}; add them where the results go")
    head, rest = body.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write(readme, lambda tmp: Path(tmp).write_text(f"{head}{start}\n{text}{end}{tail}"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", help="a profile's results folder, e.g. results/default")
    ap.add_argument("--readme", help="README whose results section (or scorecard) to replace")
    ap.add_argument("--scorecard", action="store_true",
                    help="write the scorecard (results/paper_claims.csv against every profile) instead")
    ap.add_argument("--regime", action="store_true",
                    help="write the sample-unlearning gap per training regime (profile, width, epochs) instead")
    ap.add_argument("--forgetting", action="store_true",
                    help="write notebook 06's reading of every profile's forgetting.csv (rankings, MIA agreement)")
    args = ap.parse_args()
    # the README sections across profiles
    for flag, make in (("scorecard", scorecard), ("regime", regime), ("forgetting", forgetting_reading)):
        if getattr(args, flag):
            root = Path(args.folder or "results")
            if any((root / f).exists() for f in TABLES):  # a profile's own files: not the root
                ap.error(f"--{flag} reads every profile under the results root, and {root} is one profile's folder: "
                         f"give its parent ({root.parent}) or no folder (results)")
            text = make(root)
            if args.readme:
                update_readme(args.readme, text, marker=flag)
            print(text)
            return
    if args.folder is None:
        ap.error("give a profile's results folder, or --scorecard, --regime or --forgetting")
    text = markdown(args.folder)
    atomic_write(Path(args.folder) / "tables.md", lambda tmp: Path(tmp).write_text(text))
    figures = summary_figures(args.folder)
    if args.readme:
        embeds = "".join(f"\n![{cap}]({path})\n\n*{cap}*\n" for path, cap in figures)
        update_readme(args.readme, markdown(args.folder, attack=("softmax_sorted", "svc")) +
                      f"\nEvery attack feature and classifier: `{Path(args.folder) / 'tables.md'}`.\n" + embeds,
                      profile=Path(args.folder).name)
    print(text)


if __name__ == "__main__":
    main()
