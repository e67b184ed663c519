"""Aggregate tidy results into the paper's tables: mean and 95 % confidence interval over seeds.

    python -m cu.report results/default [--readme README.md]

reads `training.csv`, `class_unlearning.csv`, `sample_unlearning.csv` and `mia.csv` (whichever exist)
under a profile's folder, writes `tables.md` there (the Originals' training and test accuracy, then
Tables 1/2, 3/7, 4/5 and 6 layouts: evaluation rows x methods, each
cell the mean over seeds with the half-width of a t-based 95 % confidence interval when there are
several seeds; the last row counts each method's seeds), and with --readme replaces the README's
section between the results markers.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from cu.runtime import atomic_write

ORDER = ["original", "retrain", "contrastive"]
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
}


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
    return [m for m in ORDER if m in methods] + sorted(m for m in methods if m not in ORDER)


def aggregate(df: pd.DataFrame, metrics: dict, scale: float, extra_keys=()) -> dict[str, pd.DataFrame]:
    """One table per (dataset, model, width, *extra_keys): metric rows x method columns."""
    out = {}
    keys = ["dataset", "model", "width", *extra_keys]
    for group, sub in df.groupby(keys):
        group = group if isinstance(group, tuple) else (group,)
        runs = dict(tuple(sub.groupby("method")))
        seeds = sorted(sub["seed"].unique())

        def column(m: str) -> dict:
            cells = {label: mean_ci(runs[m][col], scale) for col, label in metrics.items()}
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
    for name, (heading, metrics, scale) in TABLES.items():
        path = folder / name
        if not path.exists():
            continue
        df = pd.read_csv(path)
        if name == "mia.csv" and attack is not None and {"feature", "classifier"} <= set(df.columns):
            df = df[(df.feature == attack[0]) & (df.classifier == attack[1])]
        extra = tuple(k for k in ("feature", "classifier") if k in df.columns)  # one table per attack
        if name == "mia.csv":
            df = with_retrain_gap(df, extra)
        if name == "training.csv":  # one table per recipe; its seconds are the training's, shown in notebook 01
            df, extra = df.drop(columns="seconds", errors="ignore"), ("epochs",)
        for title, table in aggregate(df, metrics, scale, extra).items():
            parts.append(f"**{heading}** ({title})\n\n{table.to_markdown(disable_numparse=True)}")
            if name == "mia.csv" and "original" in table.columns and _mean(table.loc["AUC (%)", "original"]) <= 55:
                parts.append("The attack has **no power** here (the Original's AUC <= 55 %): these member rates say "
                             "nothing about forgetting.")
        report = {f"{c}_report": f"{label} (report half)" for c, label in metrics.items() if f"{c}_report" in df.columns}
        if report and df[list(report)].notna().any().any():  # where tuned settings are to be read (cu.tuning)
            metrics_r = {**report, **{c: label for c, label in metrics.items() if c == "acc_train_forget"}}
            rows = df.dropna(subset=list(report))
            for title, table in aggregate(rows, metrics_r, scale, extra).items():
                parts.append(f"**{heading}, test accuracies on the report half of the test set, which tuning "
                             f"never sees** ({title})\n\n{table.to_markdown(disable_numparse=True)}")
    return "\n\n".join(parts) + "\n"


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


def update_readme(readme: str | Path, text: str, profile: str = "default") -> None:
    """Replace the README's section of `profile`, between `<!-- results:PROFILE:start -->` and `...:end -->`."""
    start, end = f"<!-- results:{profile}:start -->", f"<!-- results:{profile}:end -->"
    readme = Path(readme)
    body = readme.read_text()
    if start not in body or end not in body:
        raise ValueError(f"{readme} lacks the markers {start} ... {end}; add them where the results go")
    head, rest = body.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write(readme, lambda tmp: Path(tmp).write_text(f"{head}{start}\n{text}{end}{tail}"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="a profile's results folder, e.g. results/default")
    ap.add_argument("--readme", help="README whose results section to replace")
    args = ap.parse_args()
    text = markdown(args.folder)
    atomic_write(Path(args.folder) / "tables.md", lambda tmp: Path(tmp).write_text(text))
    if args.readme:
        update_readme(args.readme, markdown(args.folder, attack=("softmax_sorted", "svc")) +
                      f"\nEvery attack feature and classifier: `{Path(args.folder) / 'tables.md'}`.\n",
                      profile=Path(args.folder).name)
    print(text)


if __name__ == "__main__":
    main()
